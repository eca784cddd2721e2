"""The kinds of job, by name."""

from .benchmark import BenchmarkKind
from .compress import CompressKind
from .convert import ConvertKind
from .profile import ProfileKind
from .validate import ValidateKind

KINDS = {
    "validate": ValidateKind(),
    "convert": ConvertKind(),
    "compress": CompressKind(),
    "benchmark": BenchmarkKind(),
    "profile": ProfileKind(),
}
