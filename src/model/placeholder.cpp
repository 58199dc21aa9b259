// Placeholder translation unit; replaced as the module lands.
