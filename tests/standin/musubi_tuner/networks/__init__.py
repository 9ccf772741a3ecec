"""Stand-in for musubi_tuner.networks (only what the HV1.5 pipeline uses)."""
