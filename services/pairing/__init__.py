"""pairing: matching profiles, matching rounds and pairs."""
