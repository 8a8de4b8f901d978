"""Runs named checks and reports them the way deploy/tests/run.sh counts them."""


class Failure(Exception):
    """Reports a property the checked files do not have."""


def run(subject, checks):
    """Runs each (check, arguments) pair; prints PASS/FAIL per check and a closing
    "SUBJECT: N passed, M failed" line. Returns the process exit status."""
    passed = failed = 0
    for check, arguments in checks:
        label = check.__name__.removeprefix("check_").replace("_", " ")
        try:
            check(*arguments)
        except Failure as failure:
            failed += 1
            print(f"FAIL {label}: {failure}")
        else:
            passed += 1
            print(f"PASS {label}")
    print(f"{subject}: {passed} passed, {failed} failed")
    return 1 if failed else 0
