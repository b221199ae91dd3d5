"""`v2d calibrate PATH --board 9x6 --square 0.025 --out FILE`: chessboard calibration of a camera
from an image folder, a video or ``webcam:N``; writes a calibration file (format: calib/README.md)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="calibrate a camera from chessboard images, a video or a webcam",
        description="Find a chessboard in an image folder, a video or webcam:N, solve the intrinsics and "
        "distortion (k1 k2 p1 p2 k3) with OpenCV, and write a calibration file.",
    )
    parser.add_argument("path", metavar="PATH", help="image folder, video file, or webcam:N")
    parser.add_argument("--board", default="9x6", help="inner corners, COLUMNSxROWS (default: 9x6)")
    parser.add_argument("--square", type=float, default=0.025, help="side of a square in metres (default: 0.025)")
    parser.add_argument("--out", required=True, metavar="FILE", help="calibration file to write")
    parser.add_argument(
        "--max-views", type=int, default=30, help="most views used in the solve, spread over those found (default: 30)"
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="webcam only: seconds to collect views (default: 60)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from slam.errors import CalibrationError
    from slam.io.chessboard import Board, calibrate

    board = Board.parse(args.board, args.square)
    live = str(args.path).startswith("webcam:")
    if live:
        print(f"Show the {board} board to the camera from many angles and distances ({args.timeout:g} s) ...")
    result = calibrate(
        args.path, board, max_views=args.max_views, webcam_timeout=args.timeout, progress=print if live else None
    )
    camera = result.camera
    try:
        camera.to_file(args.out, comment=result.comment())
    except OSError as err:
        raise CalibrationError(f"cannot write {args.out}: {err.strerror or err}") from None

    print(
        f"views used: {result.views_used} (rejected without a full board: {result.views_rejected}"
        + (f", near-duplicates skipped: {result.duplicates_skipped}" if result.duplicates_skipped else "")
        + (f", left out beyond --max-views: {result.views_unused}" if result.views_unused else "")
        + ")"
    )
    worst = int(result.per_view_errors.argmax())
    print(
        f"RMS reprojection error: {result.rms:.3f} px "
        f"(worst view {result.view_names[worst]}: {result.per_view_errors[worst]:.3f} px)"
    )
    print(f"image size: {camera.width}x{camera.height}")
    print(f"fx = {camera.fx:.3f}  fy = {camera.fy:.3f}  cx = {camera.cx:.3f}  cy = {camera.cy:.3f}")
    if camera.distortion:
        labels = ("k1", "k2", "p1", "p2", "k3")
        print("distortion: " + "  ".join(f"{n} = {v:.5f}" for n, v in zip(labels, camera.distortion)))
    if result.rms > 1.0:
        print("warning: the reprojection error is above 1 px; retake sharper, more varied views of the board")
    print(f"wrote {args.out}")
    return 0
