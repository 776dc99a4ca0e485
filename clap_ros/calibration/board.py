"""Calibration boards: geometry, detection in an image, and a printable picture.

A board is given by its number of *squares* (``cols`` across, ``rows`` down) and the square size in
metres; a 10x7 chessboard has 9x6 inner corners. The board frame is OpenCV's: x along a row, y down
the columns, z into the board (the camera looking at the printed side sees z pointing away).

Chessboard corners are put in one canonical order, so a board pose means the same thing in every
view (hand-eye needs that): the order OpenCV returns is made right-handed, and for a board with one
even and one odd number of squares, the 180-degree ambiguity is resolved by the square colours
(the square at the top-left of the board, in board coordinates, is black). A board with both counts
even or both odd is symmetric under that rotation: fine for intrinsics, ambiguous for hand-eye.
ChArUco boards carry marker ids, so their corners are never ambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

BOARD_KINDS = ("chessboard", "charuco")
DEFAULT_DICTIONARY = "DICT_5X5_100"


class CalibrationError(RuntimeError):
    """Calibration could not be done with the data given (no board found, too few views, ...)."""


class CalibrationInputError(ValueError):
    """The input is unusable as given (no images, mismatched counts, unknown joint names, ...)."""


def aruco_available() -> bool:
    import cv2

    return hasattr(cv2, "aruco") and hasattr(cv2.aruco, "CharucoDetector")


@dataclass(frozen=True)
class Detection:
    """Board corners found in one image: pixel positions and the matching board points."""

    image_points: np.ndarray  # N x 2, float64, pixels (pixel-centre convention)
    object_points: np.ndarray  # N x 3, float64, metres in the board frame (z = 0)
    ids: np.ndarray  # N, int: corner index on the board

    def __len__(self) -> int:
        return int(self.ids.size)


@dataclass(frozen=True)
class Board:
    kind: str = "chessboard"
    cols: int = 10  # squares across (x)
    rows: int = 7  # squares down (y)
    square: float = 0.025  # square side, m
    marker: float = 0.0  # ChArUco marker side, m (default 0.75 * square)
    dictionary: str = DEFAULT_DICTIONARY

    def __post_init__(self):
        if self.kind not in BOARD_KINDS:
            raise CalibrationInputError(
                "board kind must be one of %s, got '%s'" % (", ".join(BOARD_KINDS), self.kind)
            )
        if self.cols < 3 or self.rows < 3:
            raise CalibrationInputError(
                "a board needs at least 3x3 squares, got %dx%d" % (self.cols, self.rows)
            )
        if not self.square > 0:
            raise CalibrationInputError(
                "square size must be positive (metres), got %r" % self.square
            )
        if self.kind == "charuco":
            if not aruco_available():
                raise CalibrationInputError(
                    "ChArUco boards need cv2.aruco (opencv-contrib or "
                    "opencv>=4.7); this OpenCV has none"
                )
            if not 0 < self.marker_size < self.square:
                raise CalibrationInputError(
                    "ChArUco marker size must be in (0, square size), got %r" % self.marker_size
                )

    # --- geometry ---------------------------------------------------------------------------
    @property
    def marker_size(self) -> float:
        return float(self.marker) if self.marker else 0.75 * float(self.square)

    @property
    def inner(self) -> tuple:
        """Inner corners (across, down)."""
        return (self.cols - 1, self.rows - 1)

    @property
    def n_corners(self) -> int:
        return (self.cols - 1) * (self.rows - 1)

    @property
    def symmetric(self) -> bool:
        """True when a chessboard looks the same after a half turn (corner order ambiguous)."""
        return self.kind == "chessboard" and (self.cols % 2) == (self.rows % 2)

    @property
    def squares_origin(self) -> np.ndarray:
        """Board-frame position (x, y) of the outer top-left corner of the squares area."""
        if self.kind == "chessboard":
            return np.array([-self.square, -self.square])
        return np.zeros(2)

    def object_points(self) -> np.ndarray:
        """All corners (n_corners x 3), index = corner id."""
        if self.kind == "charuco":
            return np.asarray(self._charuco().getChessboardCorners(), dtype=np.float64).reshape(
                -1, 3
            )
        nx, ny = self.inner
        i, j = np.meshgrid(np.arange(nx), np.arange(ny))
        pts = np.zeros((nx * ny, 3))
        pts[:, 0] = i.ravel() * self.square
        pts[:, 1] = j.ravel() * self.square
        return pts

    def describe(self) -> dict:
        d = {
            "kind": self.kind,
            "squares": [int(self.cols), int(self.rows)],
            "square_size_m": float(self.square),
        }
        if self.kind == "charuco":
            d.update(marker_size_m=self.marker_size, dictionary=self.dictionary)
        return d

    # --- OpenCV objects -------------------------------------------------------------------------
    def _charuco(self):
        import cv2

        name = self.dictionary.upper()
        if not name.startswith("DICT_"):
            name = "DICT_" + name
        if not hasattr(cv2.aruco, name):
            raise CalibrationInputError(
                "unknown ArUco dictionary '%s' (e.g. DICT_4X4_50, "
                "DICT_5X5_100, DICT_6X6_250)" % self.dictionary
            )
        dic = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, name))
        board = cv2.aruco.CharucoBoard(
            (self.cols, self.rows), float(self.square), float(self.marker_size), dic
        )
        need = (self.cols * self.rows) // 2
        if need > len(dic.bytesList):
            raise CalibrationInputError(
                "dictionary %s has %d markers, a %dx%d ChArUco board needs %d"
                % (name, len(dic.bytesList), self.cols, self.rows, need)
            )
        return board

    # --- detection ---------------------------------------------------------------------------
    def detect(self, image: np.ndarray, min_corners: int = 6) -> Optional[Detection]:
        """Corners in a uint8 image (gray or RGB); None when the board is not found."""
        import cv2

        gray = np.asarray(image)
        if gray.ndim == 3:
            gray = cv2.cvtColor(gray, cv2.COLOR_RGB2GRAY)
        gray = np.ascontiguousarray(gray, dtype=np.uint8)
        if self.kind == "charuco":
            return self._detect_charuco(gray, min_corners)
        return self._detect_chessboard(gray)

    def _detect_chessboard(self, gray: np.ndarray) -> Optional[Detection]:
        import cv2

        nx, ny = self.inner
        flags = (
            cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_FAST_CHECK
        )
        ok, corners = cv2.findChessboardCorners(gray, (nx, ny), flags=flags)
        if ok:
            # Refine within a window of about a third of a square, at most 11 px.
            c = corners.reshape(-1, 2)
            spacing = float(
                np.median(np.linalg.norm(np.diff(c.reshape(ny, nx, 2), axis=1), axis=2))
            )
            win = int(max(2, min(11, spacing / 3)))
            crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-4)
            corners = cv2.cornerSubPix(gray, corners, (win, win), (-1, -1), crit)
        else:
            ok, corners = cv2.findChessboardCornersSB(
                gray,
                (nx, ny),
                flags=cv2.CALIB_CB_NORMALIZE_IMAGE
                | cv2.CALIB_CB_EXHAUSTIVE
                | cv2.CALIB_CB_ACCURACY,
            )
            if not ok:
                return None
        pts = self._canonical(gray, corners.reshape(-1, 2).astype(np.float64))
        ids = np.arange(self.n_corners)
        return Detection(pts, self.object_points(), ids)

    def _canonical(self, gray: np.ndarray, pts: np.ndarray) -> np.ndarray:
        nx, ny = self.inner
        grid = pts.reshape(ny, nx, 2)
        # Right-handed: board x then y turn clockwise in the image (y down), as seen from the front.
        ex, ey = grid[0, 1] - grid[0, 0], grid[1, 0] - grid[0, 0]
        if ex[0] * ey[1] - ex[1] * ey[0] < 0:
            grid = grid[::-1]
        if not self.symmetric and nx >= 3:
            # The square between corners (0,0)-(1,1) is board square (1,1): black on our boards;
            # its neighbour to the right, (2,1), is white. A half turn swaps them.
            def mean_at(q):
                c = q.mean(axis=0)
                r = max(1.0, 0.15 * float(np.linalg.norm(q[0] - q[3])))
                x0, x1 = int(round(c[0] - r)), int(round(c[0] + r)) + 1
                y0, y1 = int(round(c[1] - r)), int(round(c[1] + r)) + 1
                patch = gray[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)]
                return float(patch.mean()) if patch.size else 0.0

            black = mean_at(np.array([grid[0, 0], grid[0, 1], grid[1, 0], grid[1, 1]]))
            white = mean_at(np.array([grid[0, 1], grid[0, 2], grid[1, 1], grid[1, 2]]))
            if black > white:
                grid = grid[::-1, ::-1]
        return np.ascontiguousarray(grid.reshape(-1, 2))

    def _detect_charuco(self, gray: np.ndarray, min_corners: int) -> Optional[Detection]:
        import cv2

        board = self._charuco()
        detector = cv2.aruco.CharucoDetector(board)
        corners, ids, _, _ = detector.detectBoard(gray)
        if corners is None or ids is None or len(ids) < max(4, int(min_corners)):
            return None
        ids = ids.reshape(-1).astype(np.int64)
        obj = self.object_points()[ids]
        return Detection(corners.reshape(-1, 2).astype(np.float64), obj, ids)

    # --- picture -------------------------------------------------------------------------------
    def render(self, px_per_square: int = 100, margin_px: Optional[int] = None) -> np.ndarray:
        """The board as a uint8 gray image: squares area plus a white margin (default one square).

        Pixel (0, 0)'s outer corner is at board-frame ``squares_origin - margin``; one pixel is
        ``square / px_per_square`` metres."""
        px = int(px_per_square)
        if px < 8:
            raise CalibrationInputError("px_per_square must be at least 8, got %d" % px)
        margin = px if margin_px is None else int(margin_px)
        w, h = self.cols * px, self.rows * px
        if self.kind == "charuco":
            img = self._charuco().generateImage((w, h), marginSize=0, borderBits=1)
        else:
            j, i = np.mgrid[0:h, 0:w] // px
            img = np.where((i + j) % 2 == 0, 0, 255).astype(np.uint8)
        out = np.full((h + 2 * margin, w + 2 * margin), 255, np.uint8)
        out[margin : margin + h, margin : margin + w] = img
        return out
