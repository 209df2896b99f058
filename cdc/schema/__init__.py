"""Schema drift: detect, classify, apply by policy, alert."""
