// Matcher: one sequence's parse state (see matcher.h). It owns its stack pool and the stack set
// after each accepted token; the compiled grammar and its cache are shared.
#include "tessera/grammar/matcher.h"

#include <algorithm>

#include "pda.h"
#include "tessera/core/error.h"

namespace tessera::grammar {

struct Matcher::State {
  std::shared_ptr<const CompiledGrammar> g;
  StackPool pool;
  Pda pda;
  std::vector<std::vector<int32_t>> sets;  // sets[i]: the stacks after i accepted tokens
  size_t terminated_at = 0;                // sets index where EOS was accepted (0: not)
  std::vector<int32_t> one, key_scratch;
  std::vector<uint32_t> key;

  explicit State(std::shared_ptr<const CompiledGrammar> grammar)
      : g(std::move(grammar)), pda(g->grammar(), pool, g->limits().max_stacks) {}
};

Matcher::Matcher(std::shared_ptr<const CompiledGrammar> grammar) {
  if (!grammar) fail(ErrorCode::kInvalidArgument, "Matcher needs a grammar");
  s_ = std::make_unique<State>(std::move(grammar));
  s_->sets.push_back(s_->pda.initial());
}

Matcher::~Matcher() = default;
Matcher::Matcher(Matcher&&) noexcept = default;
Matcher& Matcher::operator=(Matcher&&) noexcept = default;

size_t Matcher::num_accepted() const { return s_->sets.size() - 1; }
bool Matcher::is_terminated() const { return s_->terminated_at != 0; }

bool Matcher::is_complete() const {
  const auto& cur = s_->sets.back();
  return !cur.empty() && cur.front() == kEmpty;
}

bool Matcher::only_eos_left() const {
  const auto& cur = s_->sets.back();
  return cur.size() == 1 && cur.front() == kEmpty;
}

void Matcher::fill_mask(std::span<uint64_t> mask) {
  State& st = *s_;
  const Vocabulary& v = st.g->vocab();
  if (mask.size() < v.mask_words())
    fail(ErrorCode::kInvalidArgument, "mask has ", mask.size(), " words, vocabulary needs ",
         v.mask_words());
  std::fill(mask.begin(), mask.end(), 0);
  auto set_bit = [&](int32_t t) {
    mask[static_cast<uint32_t>(t) >> 6] |= uint64_t{1} << (static_cast<uint32_t>(t) & 63);
  };
  bool complete = is_complete();
  if (!is_terminated()) {
    const Grammar& gr = st.g->grammar();
    size_t mark = st.pool.size();
    for (int32_t s : st.sets.back()) {
      if (s < 0) continue;
      // The key: frames from the top down to the first one of a named rule, so that a
      // repetition's frames (synthetic rules) are judged with the rule that contains them.
      st.key.clear();
      for (int32_t f = s; f >= 0 && st.key.size() < st.g->limits().max_key_frames;
           f = st.pool[f].parent) {
        st.key.push_back(st.pool[f].pos);
        if (!gr.rules()[gr.rule_of(st.pool[f].pos)].synthetic) break;
      }
      auto e = st.g->entry(st.key);
      for (size_t w = 0; w < v.mask_words(); ++w) mask[w] |= e->accepted[w];
      st.one.assign(1, s);
      for (int32_t t : e->uncertain) {
        auto u = static_cast<uint32_t>(t);
        if ((mask[u >> 6] >> (u & 63)) & 1) continue;
        std::string_view b = v.bytes(t);
        if (st.pda.accepts(st.one, {reinterpret_cast<const uint8_t*>(b.data()), b.size()}))
          set_bit(t);
      }
    }
    st.pool.truncate(mark);  // the uncertain checks' nodes
  }
  for (int32_t e : v.eos_tokens()) {
    auto u = static_cast<uint32_t>(e);
    mask[u >> 6] &= ~(uint64_t{1} << (u & 63));
    if (complete && !is_terminated()) set_bit(e);
  }
}

bool Matcher::accept(int32_t token) {
  State& st = *s_;
  const Vocabulary& v = st.g->vocab();
  if (token < 0 || static_cast<size_t>(token) >= v.size() || is_terminated()) return false;
  if (v.is_eos(token)) {
    if (!is_complete()) return false;
    st.sets.push_back(st.sets.back());
    st.terminated_at = st.sets.size() - 1;
    return true;
  }
  std::string_view b = v.bytes(token);
  if (b.empty()) return false;
  std::vector<int32_t> cur = st.sets.back(), next;
  for (char c : b) {
    st.pda.advance(cur, static_cast<uint8_t>(c), next);
    if (next.empty()) return false;
    std::swap(cur, next);
  }
  st.sets.push_back(std::move(cur));
  return true;
}

void Matcher::rollback(size_t n) {
  State& st = *s_;
  if (n > num_accepted())
    fail(ErrorCode::kInvalidArgument, "rollback of ", n, " tokens, only ", num_accepted(),
         " accepted");
  st.sets.resize(st.sets.size() - n);
  if (st.terminated_at >= st.sets.size()) st.terminated_at = 0;
}

}  // namespace tessera::grammar
