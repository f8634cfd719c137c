"""Science products from event files: spectra with responses, absorbed RMFs."""
