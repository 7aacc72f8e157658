"""NVBitFI file formats and processes."""
