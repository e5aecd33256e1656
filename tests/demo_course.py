"""A two-exercise lesson built in a temporary course, to test the grading machinery fast."""
from pathlib import Path

from grader.authoring import LessonBuilder

LESSON = "00_demo"


def build_demo(root: Path) -> Path:
    nb = LessonBuilder("l00")
    nb.md("# Demo lesson\nA tiny lesson used by the grader's own tests.")
    nb.parameters("SMOKE = False\nSEED = 0\nDEVICE = 'cpu'")
    nb.code("import utils\nfrom utils.checks import check_int\ncfg = utils.setup(smoke=SMOKE, seed=SEED, device=DEVICE)")
    nb.solution("double", '''
        def double(n):
            """Return 2 * n as an int."""
            ### BEGIN SOLUTION
            return 2 * n
            ### END SOLUTION
    ''')
    nb.tests("double", 1, '''
        import sys
        print("a warning on stderr must not zero a passing test", file=sys.stderr)
        check_int(double(3), 6, "double(3)")
        ### BEGIN HIDDEN TESTS
        import random
        for n in random.sample(range(1000), 5):
            assert double(n) == 2 * n
        ### END HIDDEN TESTS
    ''')
    nb.solution("square", '''
        def square(n):
            """Return n * n as an int."""
            ### BEGIN SOLUTION
            return n * n
            ### END SOLUTION
    ''')
    nb.tests("square", 2, '''
        check_int(square(4), 16, "square(4)")
        ### BEGIN HIDDEN TESTS
        assert square(-7) == 49
        ### END HIDDEN TESTS
    ''')
    nb.written("why", 1, prompt="Why does doubling twice quadruple?", answer="Because 2 x 2 = 4.")
    nb.md("## Recap\nDone.")
    return nb.save(root / "solutions" / LESSON / f"{LESSON}.ipynb")
