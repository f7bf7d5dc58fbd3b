#!/usr/bin/env python3
"""Regenerates bots.txt (the bot list shipped with the crate) and
tests/fixtures/bot_user_agents.txt (one sample user agent per pattern, for the tests)
from a checkout of https://github.com/monperrus/crawler-user-agents (MIT licence).

    python3 bots_update.py /path/to/crawler-user-agents

Review the diff: a pattern that matches a common browser must not go in.
"""
import json, os, subprocess, sys

repo = sys.argv[1]
commit = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True,
                        text=True, check=True).stdout.strip()
with open(os.path.join(repo, "crawler-user-agents.json"), encoding="utf-8") as f:
    entries = json.load(f)
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "bots.txt"), "w", encoding="utf-8") as out:
    out.write("# Bot, crawler, monitor and headless-browser user-agent patterns (regular\n")
    out.write("# expressions, one a line), from https://github.com/monperrus/crawler-user-agents\n")
    out.write(f"# commit {commit}, crawler-user-agents.json; MIT licence, (c) 2017 Martin Monperrus.\n")
    out.write("# Regenerate with bots_update.py; lines starting with # are comments.\n")
    for e in entries:
        out.write(e["pattern"] + "\n")
samples = os.path.join(here, "..", "..", "tests", "fixtures", "bot_user_agents.txt")
with open(samples, "w", encoding="utf-8") as out:
    for e in entries:
        for ua in e.get("instances", [])[:1]:
            out.write(ua.replace("\n", " ") + "\n")
