#!/bin/sh
# The connectome example end to end (results copied to runs/results/connectome/):
#   sh runs/connectome/run.sh
set -e
python runs/connectome/make_data.py
simgraph train runs/connectome/connectome.toml --out runs/out/connectome --no-progress
simgraph train runs/connectome/connectome.toml --set rule.plastic=false --out runs/out/connectome_frozen --no-progress
simgraph analyze runs/out/connectome --out runs/out/connectome/analysis
simgraph analyze runs/out/connectome_frozen --out runs/out/connectome_frozen/analysis
