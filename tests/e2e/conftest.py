# The stack fixtures serve every end-to-end module.
from tests.e2e.test_stack import start_stack, var_dir  # noqa: F401
