"""Test-only bitstream readers: the quantizer each HEVC / VVC slice or AV1 frame was coded with."""
