import numpy as np
import pytest
import torch
from PIL import Image

from reward_trainer import media
from reward_trainer.config import ImagePreprocess, VideoPreprocess


def test_ffmpeg_argv_is_the_contract():
    assert media.ffmpeg_argv("/x/v.mp4", "mov", 1, 10000) == [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-protocol_whitelist", "file", "-f", "mov",
        "-i", "/x/v.mp4", "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", "fps=1", "-frames:v", "10000",
        "-f", "image2pipe", "-c:v", "ppm", "-"]


def test_sniff_demuxer():
    assert media.sniff_demuxer(b"\x00\x00\x00\x20ftypisom\x00\x00") == "mov"
    assert media.sniff_demuxer(b"\x1a\x45\xdf\xa3\x01\x00\x00\x00\x00\x00\x00\x00") == "matroska"
    assert media.sniff_demuxer(b"RIFF\x00\x00\x00\x00AVI LIST") == "avi"
    with pytest.raises(ValueError):
        media.sniff_demuxer(b"GIF89a\x00\x00\x00\x00\x00\x00")


def test_ppm_stream_parse():
    a = bytes(range(12))
    b = bytes([255] * 6)
    buf = b"P6\n2 2\n255\n" + a + b"P6\n2 1\n255\n" + b
    frames = media.parse_ppm_stream(buf)
    assert [f.size for f in frames] == [(2, 2), (2, 1)]
    assert np.asarray(frames[0]).reshape(-1).tolist() == list(a)


def test_select_frames_indices():
    assert media.select_frames(list(range(5)), 8) == list(range(5))
    assert media.select_frames(list(range(20)), 8) == [(i * 20) // 9 for i in range(8)]


@pytest.mark.parametrize("size,grid", [((224, 224), (1, 1)), ((800, 600), (2, 2)), ((1280, 720), (2, 3)),
                                       ((1080, 1920), (3, 2)), ((4000, 1000), (1, 4))])
def test_image_transform_matches_reference_geometry(size, grid):
    # IXC-2.5's own geometry: S = 560, hd_num = 9
    cfg = ImagePreprocess(tile_size=560, hd_num=9)
    t = media.image_transform(Image.new("RGB", size, (10, 20, 30)), cfg, 9)
    assert (t.shape[2] // 560, t.shape[3] // 560) == grid and t.shape[2] % 560 == 0 and t.shape[3] % 560 == 0


def test_image_transform_pads_white_bottom_and_right_for_portrait():
    cfg = ImagePreprocess()
    land = media.image_transform(Image.new("RGB", (150, 100), (0, 0, 0)), cfg, 4)
    white = (torch.ones(3) - torch.tensor(cfg.mean)) / torch.tensor(cfg.std)
    assert land.shape == (1, 3, 224, 224)  # 2 columns, resized to 224x149, padded to 224 rows
    assert torch.allclose(land[0, :, -1, 5], white) and not torch.allclose(land[0, :, 0, 5], white)
    port = media.image_transform(Image.new("RGB", (100, 150), (0, 0, 0)), cfg, 4)
    assert port.shape == (1, 3, 224, 224)
    assert torch.allclose(port[0, :, 5, -1], white) and not torch.allclose(port[0, :, 5, 0], white)


def test_load_image_flattens_alpha_on_white(tmp_path):
    im = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    p = tmp_path / "a.png"
    im.save(p)
    assert media.load_image(str(p)).getpixel((0, 0)) == (255, 255, 255)


def test_layout_geometry_vertical_and_labels():
    cfg = VideoPreprocess(frame_long_side=40)
    frames = [Image.new("RGB", (80, 40), (100, 100, 100)) for _ in range(3)]
    im = np.asarray(media.layout_frames(frames, cfg))
    assert im.shape == (3 * (20 + 20) + 2 * 10, 40, 3)
    # label '<' of frame 1 starts at (x=2, y=y1+2); its first ink pixel is glyph row 0, col 3 -> x = 2 + 3*2
    y1 = 20 + 20 + 10
    assert (im[y1 + 2, 2 + 3 * 2] == 0).all() and (im[y1 + 2, 2] == 255).all()
    # separator line between frame 0 and 1: rows y0_end + 4, +5
    y0_end = 20 + 20
    assert (im[y0_end + 4] == 0).all() and (im[y0_end + 5] == 0).all() and (im[y0_end + 3] == 255).all()
    assert (im[y1 + 20 + 3, 10] == 100).all()


def test_layout_geometry_portrait_side_by_side():
    cfg = VideoPreprocess(frame_long_side=40)
    frames = [Image.new("RGB", (20, 40), (100, 100, 100)) for _ in range(2)]
    im = np.asarray(media.layout_frames(frames, cfg))
    assert im.shape == (20 + 40, 20 + 10 + 20, 3)
    # below the header band (labels of narrow frames overflow into the neighbours' bands, clipped at the edge)
    assert (im[20:, 20 + 4] == 0).all() and (im[20:, 20 + 6] == 255).all() and (im[20:, 20 + 3] == 255).all()


def test_video_roundtrip_with_real_ffmpeg(tmp_path):
    frames = []
    for i in range(3):
        a = np.full((48, 64, 3), 255, np.uint8)
        a[10:30, 5 + 15 * i:25 + 15 * i] = (200, 0, 0)
        frames.append(a)
    p = str(tmp_path / "v.mp4")
    media.encode_video(frames, p, fps=1)
    vcfg, icfg = VideoPreprocess(), ImagePreprocess()
    dec = media.decode_video(p, vcfg)
    assert len(dec) == 3 and dec[0].size == (64, 48)
    # the red block moved right between frames
    cols = [np.where(np.asarray(f)[20, :, 1] < 100)[0].mean() for f in dec]
    assert cols[0] < cols[1] < cols[2]
    t = media.video_tensor(p, vcfg, icfg)
    assert t.shape[3] == 112 and t.shape[2] % 112 == 0
