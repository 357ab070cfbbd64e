#!/usr/bin/env python3
"""Turns infra/template.yaml into a template LocalStack can deploy without `sam build`.

`sam build` (BuildMethod makefile: one `cargo lambda build --release --arm64` of every
function) cross-compiles a release build, minutes on two cores. Locally we build every
function once with cargo, for the host, and do what `sam build` would do with the result:
put each function's binary in its own folder as `bootstrap` and point the function's
CodeUri there. Nothing else in the template
changes but the architecture (the host's), so LocalStack runs the same resources, rules,
policies and settings as AWS.

Usage: package_local.py TEMPLATE BINARY_DIR OUT_DIR

ORDERFLOW_FUNCTIONS=payment,inventory (binary names) deploys only those functions, for
working on one service while the others do not build yet.
"""
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from cfnlint.decode import cfn_yaml


def main(template_path: str, binary_dir: str, out_dir: str) -> int:
    template = cfn_yaml.load(template_path)
    # The binaries are built for this host, so the functions say so (the template's one
    # Architectures line is for `sam build`; see Globals there).
    host_arch = "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
    function_globals = template.get("Globals", {}).get("Function", {})
    if "Architectures" in function_globals:
        function_globals["Architectures"] = [host_arch]
    os.makedirs(out_dir, exist_ok=True)
    only = {f for f in os.environ.get("ORDERFLOW_FUNCTIONS", "").split(",") if f}
    packaged = []
    for name, resource in list(template.get("Resources", {}).items()):
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        binary = resource.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        if not binary:
            print(f"error: {name} has no Metadata.BuildProperties.Binary", file=sys.stderr)
            return 2
        if only and binary not in only:
            del template["Resources"][name]
            continue
        source = os.path.join(binary_dir, binary)
        if not os.path.isfile(source):
            print(f"error: {source} is missing; build the functions first (make build)", file=sys.stderr)
            return 2
        target_dir = os.path.join(out_dir, binary)
        os.makedirs(target_dir, exist_ok=True)
        target = os.path.join(target_dir, "bootstrap")
        stamp = os.path.join(target_dir, ".source-mtime")
        mtime = str(os.stat(source).st_mtime_ns)
        # Unchanged binaries keep their bytes, so the deploy sees no code change.
        if not (os.path.exists(target) and os.path.exists(stamp) and Path(stamp).read_text() == mtime):
            shutil.copyfile(source, target)
            # Debug symbols are most of a debug binary; the zip LocalStack stores is smaller without.
            if shutil.which("strip"):
                subprocess.run(["strip", target], check=True)
            os.chmod(target, 0o755)
            with open(stamp, "w") as f:
                f.write(mtime)
        resource["Properties"]["CodeUri"] = binary
        resource.pop("Metadata", None)
        packaged.append(binary)
    with open(os.path.join(out_dir, "template.json"), "w") as f:
        json.dump(template, f, indent=1)
    print(f"packaged {len(packaged)} function(s): {', '.join(packaged)}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
