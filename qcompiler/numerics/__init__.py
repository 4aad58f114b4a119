"""Integer arithmetic shared by the reference kernels and every backend (bit-exact with TFLM)."""
