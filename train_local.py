#!/usr/bin/env python3
"""Train a HunyuanVideo 1.5 LoRA from a ZIP of captioned images and videos. `python train_local.py --help`."""

import sys

from hvlora.core.cli import main

if __name__ == "__main__":
    sys.exit(main())
