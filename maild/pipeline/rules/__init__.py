"""Guards: small checks that can end a message as ``blocked`` with a reason, one module each."""
