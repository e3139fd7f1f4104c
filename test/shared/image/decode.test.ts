// Decoding untrusted images: exact pixels for lossless input, orientation, transparency, resize and
// crop plans, and coded errors (not_an_image / image_too_large) for everything that is not a sane image.
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { CodedError } from '../../../src/shared/errors.js';
import { DefaultImageLimits, decodeImage, probeImage } from '../../../src/shared/image/decode.js';
import { encodePng, encodeWebp } from '../../../src/shared/image/encode.js';
import { bombPng, jpeg, noiseRgb, png, smoothRgb, textFile, truncated } from './images.js';

async function codeOf(p: Promise<unknown>): Promise<{ code: string; details: Record<string, unknown> }> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(CodedError);
    const e = err as CodedError;
    return { code: e.code, details: { ...e.details } };
  }
  throw new Error('expected a rejection');
}

describe('decodeImage', () => {
  it('returns the exact RGB pixels of a PNG', async () => {
    const img = noiseRgb(13, 7, 1);
    const out = await decodeImage(await png(img));
    expect([out.width, out.height]).toEqual([13, 7]);
    expect(Buffer.from(out.data).equals(Buffer.from(img.data))).toBe(true);
    expect(out.source).toMatchObject({ format: 'png', width: 13, height: 7 });
  });

  it('decodes a JPEG close to its source (lossy, quality 95)', async () => {
    const img = smoothRgb(40, 30);
    const out = await decodeImage(await jpeg(img));
    expect(out.source.format).toBe('jpeg');
    let sum = 0;
    for (let i = 0; i < img.data.length; i++) sum += Math.abs(out.data[i]! - img.data[i]!);
    expect(sum / img.data.length).toBeLessThan(3);
  });

  it('round-trips lossless WebP', async () => {
    const img = noiseRgb(9, 11, 2);
    const out = await decodeImage(await encodeWebp(img, { lossless: true }));
    expect(out.source.format).toBe('webp');
    expect(Buffer.from(out.data).equals(Buffer.from(img.data))).toBe(true);
  });

  it('turns greyscale into RGB and flattens transparency onto white', async () => {
    // Two pixels of grey+alpha: opaque 50, fully transparent 50.
    const ga = Buffer.from([50, 255, 50, 0]);
    const bytes = await sharp(ga, { raw: { width: 2, height: 1, channels: 2 } })
      .png()
      .toBuffer();
    const out = await decodeImage(bytes);
    expect([...out.data]).toEqual([50, 50, 50, 255, 255, 255]);
  });

  it('applies the EXIF orientation (6: rotate 90 degrees clockwise)', async () => {
    const img = noiseRgb(4, 2, 3);
    const bytes = await sharp(img.data, { raw: { width: 4, height: 2, channels: 3 } })
      .withMetadata({ orientation: 6 })
      .png()
      .toBuffer();
    const info = await probeImage(bytes);
    expect([info.width, info.height]).toEqual([2, 4]);
    const out = await decodeImage(bytes);
    expect([out.width, out.height]).toEqual([2, 4]);
    // Clockwise: the output's top row is the input's left column read bottom to top.
    const px = (d: Uint8Array, w: number, x: number, y: number) => [
      ...d.subarray((y * w + x) * 3, (y * w + x) * 3 + 3),
    ];
    expect(px(out.data, 2, 0, 0)).toEqual(px(img.data, 4, 0, 1));
    expect(px(out.data, 2, 1, 0)).toEqual(px(img.data, 4, 0, 0));
    expect(px(out.data, 2, 0, 3)).toEqual(px(img.data, 4, 3, 1));
  });

  it('takes the first frame of an animation', async () => {
    // Two 4x3 frames, red then blue, stacked as pages.
    const raw = Buffer.alloc(4 * 3 * 2 * 3);
    for (let i = 0; i < 12; i++) {
      raw[i * 3] = 255;
      raw[(12 + i) * 3 + 2] = 255;
    }
    const gif = await sharp(raw, { raw: { width: 4, height: 6, channels: 3, pageHeight: 3 } })
      .gif()
      .toBuffer();
    expect((await sharp(gif).metadata()).pages).toBe(2);
    const out = await decodeImage(gif);
    expect([out.width, out.height]).toEqual([4, 3]);
    expect([...out.data.subarray(0, 6)]).toEqual([255, 0, 0, 255, 0, 0]);
    expect([...out.data.subarray(33)]).toEqual([255, 0, 0]);
  });

  it('follows a plan: extract only, and resize then extract', async () => {
    const img = noiseRgb(10, 6, 4);
    const bytes = await png(img);
    const crop = await decodeImage(bytes, {
      plan: () => ({ extract: { left: 3, top: 2, width: 4, height: 3 } }),
    });
    expect([crop.width, crop.height]).toEqual([4, 3]);
    for (let y = 0; y < 3; y++) {
      const want = img.data.subarray(((y + 2) * 10 + 3) * 3, ((y + 2) * 10 + 7) * 3);
      expect([...crop.data.subarray(y * 12, y * 12 + 12)]).toEqual([...want]);
    }
    // A flat image stays flat whatever the kernel; the size is what we check here.
    const flat = { data: new Uint8Array(60 * 40 * 3).fill(77), width: 60, height: 40 };
    const small = await decodeImage(await png(flat), {
      plan: (info) => {
        expect(info).toMatchObject({ width: 60, height: 40 });
        return { resize: { width: 30, height: 20 }, extract: { left: 5, top: 0, width: 20, height: 20 } };
      },
    });
    expect([small.width, small.height]).toEqual([20, 20]);
    expect(small.data.every((v) => v === 77)).toBe(true);
  });

  it('rejects a plan that does not fit the image', async () => {
    const bytes = await png(noiseRgb(8, 8, 5));
    await expect(
      decodeImage(bytes, { plan: () => ({ extract: { left: 4, top: 0, width: 5, height: 8 } }) }),
    ).rejects.toThrow(RangeError);
  });
});

describe('bad images fail with coded errors', () => {
  it('a text file is not an image', async () => {
    const e = await codeOf(decodeImage(textFile()));
    expect(e.code).toBe('not_an_image');
  });

  it('an empty file is not an image', async () => {
    const e = await codeOf(decodeImage(new Uint8Array(0)));
    expect(e).toMatchObject({ code: 'not_an_image', details: { reason: 'empty' } });
  });

  it('a truncated PNG is damaged (its header still reads fine)', async () => {
    const bytes = truncated(await png(noiseRgb(64, 48, 6)), 0.6);
    await expect(probeImage(bytes)).resolves.toMatchObject({ width: 64, height: 48 });
    const e = await codeOf(decodeImage(bytes));
    expect(e.code).toBe('not_an_image');
    expect(e.details.format).toBe('png');
  });

  it('a truncated JPEG is damaged', async () => {
    const bytes = truncated(await jpeg(noiseRgb(64, 48, 7)), 0.6);
    expect((await codeOf(decodeImage(bytes))).code).toBe('not_an_image');
  });

  it('a 20000x20000 PNG bomb is refused from its header, before any decoding', async () => {
    const bomb = bombPng(20000, 20000);
    expect(bomb.length).toBeLessThan(100_000);
    // probeImage reads only the header: the refusal cannot have come from a decoder.
    expect((await codeOf(probeImage(bomb))).code).toBe('image_too_large');
    const e = await codeOf(decodeImage(bomb));
    expect(e).toEqual({
      code: 'image_too_large',
      details: { pixels: 400_000_000, maxPixels: DefaultImageLimits.maxPixels },
    });
  });

  it('a file over the byte cap is refused before sharp reads it', async () => {
    const bytes = await png(noiseRgb(32, 32, 8));
    const e = await codeOf(decodeImage(bytes, { maxBytes: 1000 }));
    expect(e).toEqual({ code: 'image_too_large', details: { bytes: bytes.length, maxBytes: 1000 } });
    // Even garbage of that size: the byte check comes first.
    const e2 = await codeOf(decodeImage(new Uint8Array(2000), { maxBytes: 1000 }));
    expect(e2.code).toBe('image_too_large');
  });

  it('the pixel cap is configurable', async () => {
    const bytes = await png(noiseRgb(40, 30, 9));
    const e = await codeOf(decodeImage(bytes, { maxPixels: 1199 }));
    expect(e).toEqual({ code: 'image_too_large', details: { pixels: 1200, maxPixels: 1199 } });
    await expect(decodeImage(bytes, { maxPixels: 1200 })).resolves.toMatchObject({ width: 40, height: 30 });
  });

  it('SVG is refused although sharp could render it', async () => {
    const svg = new TextEncoder().encode(
      '<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000"><rect width="10" height="10"/></svg>',
    );
    const e = await codeOf(decodeImage(svg));
    expect(e).toMatchObject({ code: 'not_an_image', details: { format: 'svg' } });
  });
});

describe('encodePng', () => {
  it('validates its input', async () => {
    await expect(encodePng({ data: new Uint8Array(5), width: 2, height: 1 })).rejects.toThrow(RangeError);
  });
});
