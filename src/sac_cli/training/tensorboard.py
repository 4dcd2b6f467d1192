"""TensorBoard event files beside metrics.jsonl (`logger.tensorboard=true`): the same metric
names at the same steps, the composed config as text, and each evaluation video as an
animated image.

A resumed run logs again the steps after its checkpoint (metrics.jsonl drops them first);
here the new event file starts with TensorBoard's purge marker at the checkpoint's step + 1,
so that readers hide what the killed attempt wrote from there on: one point per step.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from sac_cli.errors import UserError

TENSORBOARD_DIR = "tensorboard"
INSTALL = "pip install 'sac-cli[tensorboard]' (or 'tensorboard>=2.14,<3')"
# Videos shrink to this many frames a second and pixels a side in TensorBoard's image pane.
VIDEO_FPS = 10
VIDEO_SIDE = 240


class TensorBoardLog:
    def __init__(self, run_dir: Path, config: dict[str, Any], resume_step: int) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError(f"logger.tensorboard=true needs TensorBoard: {INSTALL}") from None
        folder = run_dir / TENSORBOARD_DIR
        purge = resume_step + 1 if folder.exists() else None
        self.writer = SummaryWriter(str(folder), purge_step=purge)
        if purge is None:
            text = json.dumps(config, indent=2)
            self.writer.add_text("config", f"```\n{text}\n```", 0)

    def log(self, step: int, row: dict[str, float]) -> None:
        for key, value in row.items():
            self.writer.add_scalar(key, value, step)
        # As soon as metrics.jsonl's line: a row is in both or in neither after a kill.
        self.writer.flush()

    def log_video(self, step: int, path: Path) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        gif, height, width = _gif(path)
        image = Summary.Image(
            height=height, width=width, colorspace=3, encoded_image_string=gif
        )
        summary = Summary(value=[Summary.Value(tag="eval/video", image=image)])
        # SummaryWriter.add_video needs moviepy 1 (moviepy.editor); moviepy 2 is installed.
        self.writer._get_file_writer().add_summary(summary, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _gif(path: Path) -> tuple[bytes, int, int]:
    """An MP4 as an animated GIF of at most VIDEO_FPS frames a second, VIDEO_SIDE pixels."""
    import imageio.v2 as imageio  # with imageio-ffmpeg, which moviepy brings
    from PIL import Image

    with imageio.get_reader(path) as reader:
        fps = float(reader.get_meta_data().get("fps") or 30.0)
        every = max(1, round(fps / VIDEO_FPS))
        frames = [Image.fromarray(f) for i, f in enumerate(reader) if i % every == 0]
    if not frames:
        raise UserError(f"{path} holds no frames")
    scale = VIDEO_SIDE / max(frames[0].size)
    size = (max(1, round(frames[0].width * scale)), max(1, round(frames[0].height * scale)))
    frames = [frame.resize(size) for frame in frames]
    buffer = io.BytesIO()
    frames[0].save(
        buffer, format="GIF", save_all=True, append_images=frames[1:],
        duration=round(1000 * every / fps), loop=0,
    )  # fmt: skip
    return buffer.getvalue(), size[1], size[0]
