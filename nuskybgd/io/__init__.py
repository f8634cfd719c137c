"""Readers and writers: FITS/OGIP files, DS9 regions, XSPEC XCM files, outputs."""
