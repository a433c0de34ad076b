#!/usr/bin/env python3
"""Prints schema/migrations/NNNN_*.sql in version order, one path per line (used by meson)."""
import os
import re
import sys

d = sys.argv[1]
names = sorted(n for n in os.listdir(d) if re.fullmatch(r"\d{4}_[a-z0-9_]+\.sql", n))
print("\n".join(os.path.join(d, n) for n in names))
