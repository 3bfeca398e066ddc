"""ferry's CDK app: builds the stacks from `ferry_infra.environments.FERRY` and synthesizes their
CloudFormation templates into infra/cdk.out.

    python app.py        (or `make infra-synth`; `cdk synth` / `cdk deploy` from this folder)

No AWS credentials or lookups are needed: every value comes from the configuration.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from aws_cdk import App  # noqa: E402
from ferry_infra.assembly import build  # noqa: E402
from ferry_infra.environments import FERRY  # noqa: E402


def main() -> None:
    # The CDK CLI passes cdk.json's context and its output folder itself; `python app.py` reads
    # the same context so both synthesize the same templates into the same place.
    context = json.loads((HERE / "cdk.json").read_text())["context"]
    outdir = None if "CDK_OUTDIR" in os.environ else str(HERE / "cdk.out")
    app = App(context=context, outdir=outdir)
    build(app, FERRY)
    app.synth()


if __name__ == "__main__":
    main()
