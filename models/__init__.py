"""modelzoo's offline ML package: one subpackage per task plus ``common``.

Training code lives here; the service (``app``) imports only the predictors.
"""
