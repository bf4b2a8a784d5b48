"""casegate: the on-site edge gateway of a case-handling center."""
__version__ = "0.1.0"
