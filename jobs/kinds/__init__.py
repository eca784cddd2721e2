"""The kinds of job, by name."""

from .benchmark import BenchmarkKind
from .compress import CompressKind
from .convert import ConvertKind
from .profile import ProfileKind
from .serve_profile import ServeProfileKind
from .validate import ValidateKind

KINDS = {
    "validate": ValidateKind(),
    "convert": ConvertKind(),
    "compress": CompressKind(),
    "benchmark": BenchmarkKind(),
    "profile": ProfileKind(),
    "serve_profile": ServeProfileKind(),
}
