"""Synthetic videos of small articulated people with exact PoseTrack18 ground truth.

`generate_dataset` writes the dataset; `ClipRenderer` renders single frames with their truth
(label map, joint visibility) for tests and custom pipelines. See docs/synthetic.md.
"""
from .config import PRESETS, SynthConfig, make_config
from .dataset import generate_dataset
from .render import ClipRenderer, JointStatus, RenderedFrame

__all__ = ['PRESETS', 'ClipRenderer', 'JointStatus', 'RenderedFrame', 'SynthConfig', 'generate_dataset',
           'make_config']
