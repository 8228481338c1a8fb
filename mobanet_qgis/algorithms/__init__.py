"""The MoBaNet Processing algorithms: segment, train and evaluate."""
