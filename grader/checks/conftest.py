"""What every check receives: the submission (sandboxed), the reference (live or snapshot), seeded inputs."""
import pytest


@pytest.fixture(scope="session")
def grading(request):
    from grader.run import COLLECTOR
    plugin = request.config.stash.get(COLLECTOR, None)
    if plugin is None:
        pytest.exit("the checks run through `python -m grader`, not plain pytest", returncode=2)
    return plugin


@pytest.fixture(scope="session")
def sub(grading):
    return grading.sandbox


@pytest.fixture(scope="session")
def ref(grading):
    return grading.reference


@pytest.fixture
def g(request, grading):
    """A generator seeded by the check's name and the grading seed: the same inputs on every run of one seed."""
    from grader.harness import seeded
    return seeded(request.node.name, grading.seed)
