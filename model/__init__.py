"""labelloop model layer: pure machine learning, arrays in, arrays out."""
