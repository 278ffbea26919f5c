"""``redcapfs profiles [--json]``: the profiles of the config file, with where each token comes from.

It reads the config file only: no token is fetched (no ``token_command`` is
run, no keyring opened), so listing can never print or leak one.
"""

from __future__ import annotations

import argparse
import json

from redcapfs.cliout import finish, say
from redcapfs.profiles import Config, ProfileError, config_path, known_project, load

EXAMPLE = """an example (chmod 600 the token file):
  default = "study1"

  [study1]
  url = "https://redcap.example.edu/api/"
  token_file = "~/.config/redcapfs/study1.token"
  options = "cache_size=1G"

  [study2]
  url = "https://redcap.example.edu/api/"
  token_command = ["pass", "show", "redcap/study2"]   # or: keyring = true"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redcapfs profiles",
        description="List the profiles of the config file ($REDCAPFS_CONFIG, default ~/.config/redcapfs/"
                    "config.toml): URL, where the token comes from, default options. Never prints a token.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="a JSON array, one object per profile")
    return parser


def _rows(config: Config) -> list[dict]:
    rows = []
    for name, profile in config.profiles.items():
        row = profile.public(name == config.default)
        row["project_id"] = known_project(name)
        rows.append(row)
    return rows


def main(argv: list[str]) -> int:
    """``redcapfs profiles``."""
    args = build_parser().parse_args(argv)
    try:
        config = load(config_path())
    except ProfileError as exc:
        say(f"redcapfs profiles: {exc}", err=True)
        return finish(1)
    rows = _rows(config)
    if args.json:
        say(json.dumps(rows, indent=2))
        return finish(0)
    if not rows:
        where = "has no profiles" if config.path.exists() else "does not exist"
        say(f"no profiles: {config.path} {where}\n{EXAMPLE}")
        return finish(0)
    say(f"profiles in {config.path}:")
    for row in rows:
        mark = " (default)" if row["default"] else ""
        project = f" project {row['project_id']}" if row["project_id"] else ""
        options = ",".join(row["options"]) or "(none)"
        say(f"  {row['name']}{mark}  {row['url']}{project}\n    token: {row['token_source']}; options: {options}")
    return finish(0)
