"""Namespace rules that are not what a rule must be, named by dotted path in the tests' settings.

A rule is a function `rule(user, name)`, sync or async (INTEGRATION.md section 7): these are
refused when the rules are read (`realtime.namespaces`) and reported by `manage.py check`
(realtime.E003).
"""


class RuleClass:  # a class: calling it makes an instance, not a decision
    def __init__(self, user, name):
        pass


def generator_rule(user, name):
    yield True


async def async_generator_rule(user, name):
    yield True


class CallableRule:
    def __call__(self, user, name):
        return True


callable_rule = CallableRule()  # callable, but not a function

NOT_FUNCTIONS = ("RuleClass", "generator_rule", "async_generator_rule", "callable_rule")


def one_argument(user):
    return True


def keyword_name(user, *, name):
    return True
