"""Decode paths beside libvips for the common first views: stored tiles read by offset, decoded
with libdeflate / libjpeg-turbo (imagecodecs, simplejpeg, libturbojpeg through ctypes for
YCbCr planes), assembled in numpy, at most one libvips resize, one libjpeg-turbo encode.

Blocking, CPU-bound (called from imaging.render in the render threads). Imports numpy,
imagecodecs, simplejpeg, tifffile, pyvips, iiif.plan and sources.describe; never Starlette.
"""
