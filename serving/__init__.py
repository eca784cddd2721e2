"""berth-serve: Berth's serving runtime (Open Inference Protocol v2 over HTTP).

It talks to the dashboard only over HTTP and imports nothing of the Django project: a serving
host installs numpy, onnxruntime, uvicorn and prometheus-client.
"""

__version__ = "0.1.0"
