r"""``starpose-synth``: generate synthetic tiny-people videos (PoseTrack18 format) and preview them.

Examples (a clip becomes a rosbag2 with the bag tools' `starpose-video2bag`)::

    starpose-synth generate data/synth_demo --preset demo --seed 1
    starpose-video2bag data/synth_demo/images/val/000002_synth data/synth_demo_bag --storage mcap \
        --posetrack-json data/synth_demo/annotations/val/000002_synth.json
    starpose-synth generate data/synth_train --preset train --set person_height=[80,260] --set frames=80
    starpose-synth preview data/synth_demo --split val --frames 8 --out outputs/synth_sheet.png --gif outputs/s.gif
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import fields

import yaml

from .config import DIFFICULTY, PRESETS, SynthConfig


def _parse_set(items: list[str]) -> dict:
    """``key=value`` pairs with YAML values (lists become tuples for range fields)."""
    types = {f.name: f.type for f in fields(SynthConfig)}
    overrides = {}
    for item in items:
        key, sep, text = item.partition('=')
        if not sep:
            raise SystemExit(f'--set expects key=value, got {item!r}')
        if key not in types:
            raise SystemExit(f'--set: unknown field {key!r}; valid: {", ".join(sorted(types))}')
        value = yaml.safe_load(text)
        overrides[key] = tuple(value) if isinstance(value, list) else value
    return overrides


def _parse_videos(text: str) -> dict[str, int]:
    videos = {}
    for part in text.split(','):
        split, sep, count = part.partition('=')
        if not sep or not count.strip().isdigit():
            raise SystemExit(f'--videos expects split=count[,split=count], got {text!r}')
        videos[split.strip()] = int(count)
    return videos


def _generate(args) -> int:
    from tqdm import tqdm

    from .dataset import generate_dataset

    overrides = _parse_set(args.set)
    for name in ('frames', 'width', 'height'):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.videos:
        overrides['videos'] = _parse_videos(args.videos)
    start = time.perf_counter()
    with tqdm(unit='frame', desc='rendering', disable=args.quiet) as bar:
        manifest = generate_dataset(
            args.out, args.preset, args.seed, difficulty=args.difficulty, overwrite=args.overwrite,
            progress=lambda n: bar.update(n - bar.n), **overrides)
    seconds = time.perf_counter() - start
    config = manifest['config']
    print(f"wrote {manifest['frames']} frames ({config['width']}x{config['height']}), "
          f"{manifest['annotations']} person annotations in {sum(map(len, manifest['splits'].values()))} videos "
          f"to {args.out} in {seconds:.1f} s ({manifest['frames'] / seconds:.1f} frames/s)")
    split, sequences = next(iter(manifest['splits'].items()))
    print(f"as a rosbag2: starpose-video2bag {args.out}/images/{split}/{sequences[0]} BAG --posetrack-json "
          f"{args.out}/annotations/{split}/{sequences[0]}.json --fps {config['fps']:g}")
    return 0


def _preview(args) -> int:
    from .preview import contact_sheet, load_frames, save_gif, save_png

    sheet_frames = load_frames(args.dataset, args.split, args.sequence, args.frames, args.scale)
    path = save_png(contact_sheet(sheet_frames, args.columns), args.out, args.max_width, args.quantize)
    print(f'contact sheet: {path} ({path.stat().st_size // 1024} KB)')
    if args.gif:
        gif_frames = load_frames(args.dataset, args.split, args.sequence, args.gif_frames, args.scale)
        gif = save_gif(gif_frames, args.gif, args.gif_fps, args.max_width)
        print(f'gif: {gif} ({gif.stat().st_size // 1024} KB)')
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line: `generate` and `preview` subcommands."""
    parser = argparse.ArgumentParser(prog='starpose-synth', description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest='command', required=True)
    gen = commands.add_parser('generate', help='render a PoseTrack18-format dataset')
    gen.add_argument('out', help='output folder (images/, annotations/, synth_manifest.json)')
    gen.add_argument('--preset', choices=sorted(PRESETS), default='demo')
    gen.add_argument('--seed', type=int, default=0)
    gen.add_argument('--difficulty', choices=list(DIFFICULTY), default='medium',
                     help='noise, blur, lighting, camera shake and clutter level applied over the preset')
    gen.add_argument('--frames', type=int, help='frames per video')
    gen.add_argument('--width', type=int)
    gen.add_argument('--height', type=int)
    gen.add_argument('--videos', help='videos per split, e.g. train=8,val=2')
    gen.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE',
                     help='override any config field (YAML value), e.g. --set person_height=[70,250]')
    gen.add_argument('--overwrite', action='store_true', help='replace an earlier dataset in OUT')
    gen.add_argument('--quiet', action='store_true', help='no progress bar')
    gen.set_defaults(func=_generate)
    pre = commands.add_parser('preview', help='contact sheet (PNG) and GIF with ground-truth skeletons')
    pre.add_argument('dataset', help='dataset folder written by `generate` (or PoseTrack18 itself)')
    pre.add_argument('--split', default='val')
    pre.add_argument('--sequence', default='0', help='sequence name or index within the split')
    pre.add_argument('--frames', type=int, default=8, help='frames on the contact sheet (evenly spaced)')
    pre.add_argument('--columns', type=int, default=4)
    pre.add_argument('--scale', type=float, default=1.0, help='upscale frames before drawing (tiny people)')
    pre.add_argument('--max-width', type=int, help='shrink the sheet and the GIF frames to this width')
    pre.add_argument('--quantize', action='store_true', help='256-colour PNG (small files for docs)')
    pre.add_argument('--out', default='outputs/synth_preview.png')
    pre.add_argument('--gif', help='also write an animated GIF here')
    pre.add_argument('--gif-frames', type=int, default=40)
    pre.add_argument('--gif-fps', type=float, default=10.0)
    pre.set_defaults(func=_preview)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileExistsError, FileNotFoundError, IndexError) as err:
        print(f'starpose-synth: error: {err}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # frames and annotations written so far stay; the manifest comes last
        print(f'starpose-synth: interrupted; {getattr(args, "out", "the output")} is incomplete (no manifest, so '
              '--overwrite will not touch it): delete it to start again', file=sys.stderr)
        return 130
    except OSError as err:  # a read-only or full output: the first frame's write fails, nothing is removed
        print(f'starpose-synth: error: cannot write {err.filename or args.out}: {err.strerror or err}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
