"""Render one clip frame by frame: image, a label map of who is seen where, and per-person truth.

People and objects are painted far to near (by the row of their ground contact), each into the
RGB frame and, with the same shapes, into a ``uint16`` label map. The label map decides joint
visibility: a joint is visible when the pixel under it shows the same person (any of its parts),
occluded when it shows someone or something else. Degradations (lighting, blur, noise) come last
and never move anything, so the annotations stay exact.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .body import HEAD_BOTTOM, L_EAR, NOSE, R_EAR, Projected
from .config import SynthConfig
from .people import Ground, PersonTrack, make_people
from .scene import SUBPIXEL_BITS, Occluder, Scene, fixed

OBJECT_LABEL = 1  # label-map value of occluding objects; 0 is background
_PART_BITS = 5  # label = (person index + 1) << 5 | part id


def person_label(person_index: int, part: int) -> int:
    """Label-map value of `part` of the `person_index`-th person of the clip."""
    return ((person_index + 1) << _PART_BITS) | part


def label_person(labels: np.ndarray) -> np.ndarray:
    """Person index of each label-map value (-1 for background and objects)."""
    return (labels.astype(np.int32) >> _PART_BITS) - 1


class JointStatus:
    """Per-joint ground truth: what an annotator could see at the joint."""

    OUTSIDE = 0  # outside the image
    VISIBLE = 1
    OCCLUDED = 2  # hidden by another person or an object
    SELF_OCCLUDED = 3  # the nose of a person facing away
    UNANNOTATED = 4  # the ears (PoseTrack never annotates them)


@dataclass
class PersonFrame:
    """Ground truth of one person in one frame (image pixels)."""

    person_index: int
    track_id: int
    annotated: bool
    joints: np.ndarray  # (17, 2) float, PoseTrack order
    status: np.ndarray  # (17,) JointStatus values
    bbox_xywh: np.ndarray  # whole body incl. occluded parts, clipped to the image
    head_xywh: np.ndarray  # head box (not clipped: it sets the PCKh head size)
    visible_pixels: int
    palette: list[tuple[int, int, int]]  # every colour the person's parts may show


@dataclass
class RenderedFrame:
    """One rendered frame with its truth."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    labels: np.ndarray  # (H, W) uint16 label map
    people: list[PersonFrame]


def _draw_part(image, labels, points, radii, colour, label, line_type):
    """A tapered capsule (2 points), a polygon with a spine capsule (torso) or a disc (1 point)."""
    targets = ((image, colour, line_type), (labels, label, cv2.LINE_8))
    if len(points) == 1:
        for target, value, kind in targets:
            cv2.circle(target, fixed(points[0]), int(round(radii[0] * (1 << SUBPIXEL_BITS))), value, -1, kind,
                       SUBPIXEL_BITS)
        return
    if len(points) > 2:  # torso: polygon, then the spine capsule that gives it depth from the side
        for target, value, kind in targets:
            cv2.fillConvexPoly(target, fixed(points[:-2]), value, kind, SUBPIXEL_BITS)
        points, radii = points[-2:], radii[-2:]
    (p0, p1), (r0, r1) = points, radii
    axis = p1 - p0
    length = float(np.hypot(*axis))
    if length > 1e-6:
        normal = np.array([-axis[1], axis[0]]) / length
        quad = np.stack([p0 + r0 * normal, p1 + r1 * normal, p1 - r1 * normal, p0 - r0 * normal])
        for target, value, kind in targets:
            cv2.fillConvexPoly(target, fixed(quad), value, kind, SUBPIXEL_BITS)
    for point, r in ((p0, r0), (p1, r1)):
        for target, value, kind in targets:
            cv2.circle(target, fixed(point), int(round(r * (1 << SUBPIXEL_BITS))), value, -1, kind, SUBPIXEL_BITS)


def _apply_pattern(image, labels, body: Projected, index: int, parts: list[int], colour, pattern: str, height: float):
    """Stripes or checks in the secondary colour on the given parts, anchored to the person's neck."""
    points = np.concatenate([p for _, p, _, _ in body.parts])
    x0, y0 = np.floor(points.min(0) - height * 0.1).astype(int)
    x1, y1 = np.ceil(points.max(0) + height * 0.1).astype(int)
    h, w = labels.shape
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return
    region = labels[y0:y1, x0:x1]
    mask = np.isin(region, [person_label(index, p) for p in parts])
    period = max(2.0, 0.06 * height)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    anchor_x, anchor_y = body.joints[HEAD_BOTTOM]
    stripes = np.floor((yy - anchor_y) / (period / 2)).astype(int) % 2 == 0
    if pattern == 'checks':
        stripes ^= np.floor((xx - anchor_x) / (period / 2)).astype(int) % 2 == 0
    image[y0:y1, x0:x1][mask & stripes] = colour


class ClipRenderer:
    """Samples one clip (scene + people) from a seed and renders any of its frames."""

    def __init__(self, config: SynthConfig, seed: int):
        self.config = config
        self.seed = int(seed)
        # Separate streams: scene settings (clutter, difficulty) never change the people, and vice versa.
        scene_rng, people_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(self.seed).spawn(2))
        self.ground = Ground.for_frame(config.height, config.person_height)
        self.scene = Scene.sample(scene_rng, config, self.ground)
        self.people: list[PersonTrack] = make_people(people_rng, config, self.ground)
        self._colours = [p.appearance.part_colours() for p in self.people]

    def palette(self, index: int) -> list[tuple[int, int, int]]:
        """All colours person `index` is painted with (base and pattern colours)."""
        colours = set()
        for base, secondary, pattern in self._colours[index].values():
            colours.add(tuple(base))
            if pattern != 'plain':
                colours.add(tuple(secondary))
        return sorted(colours)

    def render(self, frame: int, clean: bool = False) -> RenderedFrame:
        """Render `frame`; `clean` skips anti-aliasing, lighting, blur and noise (same geometry)."""
        config, scene = self.config, self.scene
        size = (config.width, config.height)
        image = scene.background_at(frame, size)
        labels = np.zeros((config.height, config.width), np.uint16)
        offset = scene.camera_offset[frame]
        bodies = {k: p.at(frame, offset) for k, p in enumerate(self.people)}
        # Painter's order: whatever stands farther (higher ground contact row) is drawn first.
        items = [(float(p.foot_xy[frame][1]), 1, k) for k, p in enumerate(self.people)]
        items += [(o.ground_y - scene.margin, 0, k) for k, o in enumerate(scene.occluders)]
        line_type = cv2.LINE_8 if clean else cv2.LINE_AA
        for _, is_person, k in sorted(items):
            if is_person:
                self._draw_person(image, labels, k, bodies[k], float(self.people[k].height_px[frame]), line_type)
            else:
                self._draw_occluder(image, labels, scene.occluders[k], offset, line_type)
        truth = self._truth(labels, bodies)
        if not clean:
            image = scene.degrade(image, frame, np.random.default_rng([self.seed, frame]))
        return RenderedFrame(image=image, labels=labels, people=truth)

    def _draw_person(self, image, labels, index: int, body: Projected, height: float, line_type):
        colours = self._colours[index]
        for part, points, radii, _ in sorted(body.parts, key=lambda p: p[3]):
            _draw_part(image, labels, points, radii, colours[part][0], person_label(index, part), line_type)
        patterned: dict[tuple, list[int]] = {}
        for part, (_, secondary, pattern) in colours.items():
            if pattern != 'plain':
                patterned.setdefault((secondary, pattern), []).append(part)
        for (secondary, pattern), parts in patterned.items():
            _apply_pattern(image, labels, body, index, parts, secondary, pattern, height)

    def _draw_occluder(self, image, labels, occluder: Occluder, offset, line_type):
        shift = self.scene.margin + np.asarray(offset)  # background pixels -> frame pixels
        for kind, points, radius, colour in occluder.shapes:
            pts = points - shift
            for target, value, kind_line in ((image, colour, line_type), (labels, OBJECT_LABEL, cv2.LINE_8)):
                if kind == 'circle':
                    cv2.circle(target, fixed(pts[0]), int(round(radius * (1 << SUBPIXEL_BITS))), value, -1,
                               kind_line, SUBPIXEL_BITS)
                else:
                    cv2.fillConvexPoly(target, fixed(pts), value, kind_line, SUBPIXEL_BITS)

    def _truth(self, labels: np.ndarray, bodies: dict[int, Projected]) -> list[PersonFrame]:
        height, width = labels.shape
        owner = label_person(labels)
        pixels = np.bincount(owner.ravel() + 1, minlength=len(self.people) + 1)[1:]
        truth = []
        for k, body in bodies.items():
            col = np.round(body.joints[:, 0]).astype(int)
            row = np.round(body.joints[:, 1]).astype(int)
            inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
            status = np.full(len(col), JointStatus.OUTSIDE, np.int8)
            seen_by = np.full(len(col), -2)
            seen_by[inside] = owner[row[inside], col[inside]]
            status[inside] = np.where(seen_by[inside] == k, JointStatus.VISIBLE, JointStatus.OCCLUDED)
            if inside[NOSE] and body.facing_camera < -0.1:
                status[NOSE] = JointStatus.SELF_OCCLUDED
            status[[L_EAR, R_EAR]] = JointStatus.UNANNOTATED
            points = np.concatenate([p for _, p, _, _ in body.parts])
            radii = np.concatenate([r for _, _, r, _ in body.parts])[:, None]
            low = np.clip((points - radii).min(0), 0, [width, height])
            high = np.clip((points + radii).max(0), 0, [width, height])
            r = body.head_radius
            truth.append(PersonFrame(
                person_index=k, track_id=self.people[k].track_id, annotated=self.people[k].annotated,
                joints=body.joints, status=status, bbox_xywh=np.concatenate([low, high - low]),
                head_xywh=np.array([*(body.head_center - r), 2 * r, 2 * r]), visible_pixels=int(pixels[k]),
                palette=self.palette(k)))
        return truth
