"""Checks the one-host trial's compose file the way `docker compose up` and a reviewer would.

Usage: check_compose.py COMPOSE.yaml

Validates it against the Compose specification's JSON schema (vendored by check-jsonschema, so
offline), and checks that secrets come only from git-ignored env files with committed templates,
that every bind-mounted file exists, and that the public URL matches the published port. Prints
one line per check and a closing "N passed, M failed" line; exits 1 when any check fails.
"""

import os
import re
import subprocess
import sys
from urllib.parse import urlsplit

import yaml

from verdict import Failure, run

# Environment variable names that carry secret material and so belong in an env file.
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|KEK|KEY|CREDENTIAL|_URL$", re.IGNORECASE)


def check_compose_file_matches_the_compose_specification(path, _compose):
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "check-jsonschema"),
         "--builtin-schema", "vendor.compose-spec", path],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise Failure((result.stdout + result.stderr).strip())


def check_secrets_come_only_from_ignored_env_files(path, compose):
    here = os.path.dirname(os.path.abspath(path))
    for service_name, service in compose["services"].items():
        environment = service.get("environment", {})
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment if "=" in item)
        for name in environment:
            if SECRET_NAME.search(name):
                raise Failure(f"service {service_name} sets {name} inline; use its env file")
        for env_file in service.get("env_file", []):
            env_file = env_file if isinstance(env_file, str) else env_file["path"]
            example = os.path.join(here, env_file + ".example")
            if not os.path.isfile(example):
                raise Failure(f"service {service_name} reads {env_file}, which has no .example template")
            ignored = subprocess.run(["git", "check-ignore", "-q", os.path.join(here, env_file)],
                                     cwd=here, check=False)
            if ignored.returncode != 0:
                raise Failure(f"{env_file} is not git-ignored: its secrets could be committed")


def check_bind_mounted_files_exist(path, compose):
    here = os.path.dirname(os.path.abspath(path))
    for service_name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("."):
                if not os.path.exists(os.path.join(here, source)):
                    raise Failure(f"service {service_name} mounts {source}, which does not exist")


def check_public_url_matches_the_published_port(_path, compose):
    gateway = compose["services"]["gatehouse"]
    flags = dict(arg.split("=", 1) for arg in gateway["command"] if arg.startswith("--") and "=" in arg)
    public = urlsplit(flags["--public-url"])
    listen_port = int(flags["--listen"].rsplit(":", 1)[1])
    published = [port.rsplit(":", 2) for port in gateway["ports"]]
    if not any(int(host_port) == public.port and int(container_port) == listen_port
               for _host, host_port, container_port in published):
        raise Failure(f"--public-url port {public.port} is not published to the listener's "
                      f"port {listen_port} ({gateway['ports']})")
    if public.hostname not in {"localhost", "127.0.0.1"}:
        raise Failure(f"the trial publishes on loopback, but --public-url names {public.hostname}")


CHECKS = [
    check_compose_file_matches_the_compose_specification,
    check_secrets_come_only_from_ignored_env_files,
    check_bind_mounted_files_exist,
    check_public_url_matches_the_published_port,
]


def main(path):
    with open(path, encoding="utf-8") as file:
        compose = yaml.safe_load(file)
    return run("compose", [(check, (path, compose)) for check in CHECKS])


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
