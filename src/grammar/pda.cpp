// Pda and StackPool (see pda.h). No state beyond the pool and scratch vectors the owner passes in.
#include "pda.h"

#include <algorithm>

#include "tessera/core/error.h"

namespace tessera::grammar {

int32_t StackPool::get(int32_t parent, uint32_t pos) {
  uint64_t key = (uint64_t{static_cast<uint32_t>(parent)} << 32) | pos;
  auto [it, fresh] = index_.emplace(key, static_cast<int32_t>(nodes_.size()));
  if (fresh) nodes_.push_back(Node{pos, parent});
  return it->second;
}

void StackPool::truncate(size_t n) {
  for (size_t i = n; i < nodes_.size(); ++i)
    index_.erase((uint64_t{static_cast<uint32_t>(nodes_[i].parent)} << 32) | nodes_[i].pos);
  nodes_.resize(n);
}

void Pda::expand(int32_t s, std::vector<int32_t>& out) {
  const auto& elems = g_.elems();
  work_.clear();
  work_.push_back(s);
  size_t steps = 0;
  while (!work_.empty()) {
    int32_t cur = work_.back();
    work_.pop_back();
    if (++steps > 16 * max_stacks_ + 1024)
      fail(ErrorCode::kResourceExhausted, "grammar expansion exceeds ", max_stacks_, " stacks");
    if (cur < 0) {
      out.push_back(cur);
      continue;
    }
    StackPool::Node n = pool_[cur];
    const Elem& e = elems[n.pos];
    switch (e.kind) {
      case ElemKind::kEnd:
        work_.push_back(n.parent);
        break;
      case ElemKind::kClass:
        out.push_back(cur);
        break;
      case ElemKind::kRef: {
        // A reference in tail position replaces its frame (so x* as S ::= x S | ε runs in
        // constant stack depth).
        int32_t base =
            elems[n.pos + 1].kind == ElemKind::kEnd ? n.parent : pool_.get(n.parent, n.pos + 1);
        for (uint32_t alt : g_.rules()[e.arg].alts) work_.push_back(pool_.get(base, alt));
        break;
      }
    }
  }
}

void Pda::finish(std::vector<int32_t>& out) const {
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  if (out.size() > max_stacks_)
    fail(ErrorCode::kResourceExhausted, "grammar is too ambiguous: over ", max_stacks_,
         " parse stacks at once");
}

std::vector<int32_t> Pda::initial() {
  std::vector<int32_t> out;
  for (uint32_t alt : g_.rules()[g_.root()].alts) expand(pool_.get(kEmpty, alt), out);
  finish(out);
  return out;
}

void Pda::advance(std::span<const int32_t> in, uint8_t byte, std::vector<int32_t>& out) {
  out.clear();
  const auto& elems = g_.elems();
  const auto& classes = g_.classes();
  for (int32_t s : in) {
    if (s < 0) continue;
    StackPool::Node n = pool_[s];
    if (!classes[elems[n.pos].arg].has(byte)) continue;
    expand(pool_.get(n.parent, n.pos + 1), out);
  }
  finish(out);
}

bool Pda::accepts(std::span<const int32_t> in, std::span<const uint8_t> bytes) {
  a_.assign(in.begin(), in.end());
  for (uint8_t b : bytes) {
    advance(a_, b, b_);
    if (b_.empty()) return false;
    std::swap(a_, b_);
  }
  return true;
}

}  // namespace tessera::grammar
