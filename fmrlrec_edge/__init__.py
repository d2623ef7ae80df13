"""fmrlrec-edge: train fMRLRec once, slice it into nested widths, export each width on-device."""

__version__ = "0.1.0"
