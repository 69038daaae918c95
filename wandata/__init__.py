"""wandata: raw videos in, Wan-ready training clips out."""
__version__ = "0.1.0"
