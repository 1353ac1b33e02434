"""Routing that learns from the proxy's own traffic: the inference log, labels, the prior-centred fit,
versioned router artifacts and `synqra learn`. See README.md beside this file."""
