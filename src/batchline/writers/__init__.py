"""Writers lay results out for an API surface: file names, line encoding, publish and finalize."""
