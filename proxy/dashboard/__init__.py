"""The operator's dashboard (GET /dashboard) and the figures it shares with `synqra report`."""
