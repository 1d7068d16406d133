"""iiifsrv: a high-throughput IIIF Image and Presentation server for cultural heritage.

The package root holds only the version; see the README for the layer map.
"""

__version__ = "0.1.0"
