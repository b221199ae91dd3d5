"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""


class V2DError(Exception):
    """Base class of every error caused by the user's input (files, calibration, devices)."""


class ConfigError(V2DError):
    """A configuration file or override names an unknown field or gives a value of the wrong type."""


class SourceError(V2DError):
    """A camera source cannot be opened or read: missing folder, index file, image, device."""


class CalibrationError(V2DError):
    """A calibration file is malformed or does not fit the images it is used with."""


class DepthMapError(SourceError):
    """A depth map file cannot be read: missing, corrupt, or not a 16-bit PNG or an HxW array."""


class TrajectoryError(V2DError):
    """A trajectory file is malformed or cannot be matched to another one."""


class EvaluationError(V2DError):
    """Predictions cannot be scored against ground truth: unreadable or mismatched depth maps,
    no files in common."""


class ExportError(V2DError):
    """An output file (point cloud, mesh, depth map) cannot be written: missing permissions,
    a full disk, a path that is a folder."""


class TextFileError(V2DError):
    """A text input file cannot be read, or is not UTF-8 or UTF-16 (with a byte order mark) text."""
