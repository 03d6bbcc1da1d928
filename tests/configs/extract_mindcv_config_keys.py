"""Regenerate ``mindcv_config_keys.txt`` from a MindCV checkout (not run by the tests).

A YAML key is accepted by MindCV's ``config.py`` when it is the ``dest`` of one of the
parser's actions (that is what its ``_check_cfgs_in_parser`` tests). This script builds the parser
of a given ``config.py`` and writes those names, one per line, under a header naming the source::

    git -C MINDCV_REPO archive HEAD config.py | tar -x -C /tmp/mindcv_cfg
    python tests/configs/extract_mindcv_config_keys.py /tmp/mindcv_cfg/config.py \
        --source "mindspore-lab/mindcv <commit> (version <x.y.z>)" \
        [--older /tmp/mindcv_cfg_old/config.py --older-label v0.3.0] > tests/configs/mindcv_config_keys.txt

With ``--older``, keys missing from the older ``config.py`` are marked ``# not in <label>``.
"""
import argparse
import importlib.util
import sys


def accepted_keys(config_py: str) -> list:
    spec = importlib.util.spec_from_file_location("_mindcv_config_under_test", config_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _, parser = module.create_parser()
    return sorted({a.dest for a in parser._actions if a.dest != "help"})


def main(argv=None):
    p = argparse.ArgumentParser(description="print the YAML keys MindCV's config.py accepts")
    p.add_argument("config_py")
    p.add_argument("--source", required=True, help="where config.py came from (repo, commit, version)")
    p.add_argument("--older", help="an older config.py to compare with")
    p.add_argument("--older-label", default="older")
    a = p.parse_args(argv)
    keys = accepted_keys(a.config_py)
    older = set(accepted_keys(a.older)) if a.older else None
    out = [
        "# Keys accepted in a recipe YAML by MindCV's config.py (argparse `dest` names, `help` excluded).",
        f"# Source: {a.source}",
        "# Regenerate with tests/configs/extract_mindcv_config_keys.py.",
    ]
    for k in keys:
        out.append(k if older is None or k in older else f"{k}  # not in {a.older_label}")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
