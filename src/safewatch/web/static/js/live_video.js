// Live video at the camera's frame rate: fragmented MP4 from /api/v1/ws/cameras/{id}/video,
// played with Media Source Extensions. Each binary message is a 4-byte big-endian header length,
// a JSON header and the MP4 bytes: an "init" (codec, size; again after the server reconnects to
// the camera) or one frame's "fragment" with its wall-clock time ("wall") and video time
// ("media"). The tile asks wallAt(video.currentTime) to pick the analysis metadata of the same
// moment, and shows how old the frame on screen is (latency).
//
// The player keeps to the live edge: more than LIVE_SLACK seconds buffered ahead of the playhead
// (a stall, a background tab, a keyframe skip on the server) jumps to the newest frame.

import { liveSocket } from "./api.js";

const LIVE_SLACK = 1.0;
const KEEP_BEHIND = 10; // seconds of played video kept in the SourceBuffer

/**
 * Play a camera's live video into `video`.
 * @param {HTMLVideoElement} video
 * @param {string} cameraId
 * @param {"blurred"|"raw"} mode
 * @param {{onInit?: Function, onUnsupported?: Function, onFrame?: Function, onRelay?: Function, onRefused?: Function, onState?: Function}} hooks
 * @returns {{close(): void, reopen(): void, wallAt(t: number): number|null}}
 */
export function playLive(video, cameraId, mode, hooks = {}) {
  let source = null;
  let buffer = null;
  let queue = [];
  let offset = null; // wall - media of the current connection
  let generation = null;
  let gaveUp = false;

  const append = () => {
    if (!buffer || buffer.updating || !queue.length) return;
    try {
      buffer.appendBuffer(queue.shift());
    } catch (error) {
      if (error.name === "QuotaExceededError") { trim(true); return; }
      throw error;
    }
  };
  const trim = (hard = false) => {
    if (!buffer || buffer.updating || !buffer.buffered.length) return;
    const end = video.currentTime - (hard ? 1 : KEEP_BEHIND);
    if (end > buffer.buffered.start(0) + 1) buffer.remove(buffer.buffered.start(0), end);
  };
  const chase = () => {
    if (!buffer || !buffer.buffered.length) return;
    const last = buffer.buffered.end(buffer.buffered.length - 1);
    const first = buffer.buffered.start(0);
    if (last - video.currentTime > LIVE_SLACK || video.currentTime < first) {
      video.currentTime = Math.max(first, last - 0.1);
    }
    if (video.paused) video.play().catch(() => {});
  };
  const restart = (header, data) => {
    const type = `video/mp4; codecs="${header.codec}"`;
    if (!window.MediaSource || !MediaSource.isTypeSupported(type)) {
      gaveUp = true;
      socket.close();
      hooks.onUnsupported?.(header.codec);
      return;
    }
    generation = header.generation;
    queue = [data];
    buffer = null;
    source = new MediaSource();
    const url = URL.createObjectURL(source);
    source.addEventListener("sourceopen", () => {
      URL.revokeObjectURL(url);
      buffer = source.addSourceBuffer(type);
      buffer.mode = "segments";
      buffer.addEventListener("updateend", () => { append(); chase(); trim(); });
      append();
    }, { once: true });
    video.src = url;
    video.play().catch(() => {});
    hooks.onInit?.(header);
  };

  const socket = liveSocket(`/api/v1/ws/cameras/${encodeURIComponent(cameraId)}/video?mode=${mode}`, {
    binaryType: "arraybuffer",
    onRefused(code, reason) { hooks.onRefused?.(code, reason); },
    onState(up) { hooks.onState?.(up); },
    onMessage(event) {
      if (gaveUp) return;
      if (typeof event.data === "string") {
        // serve --cluster: the API node relays another analyzer's video and says when it
        // follows the camera to a new owner ("reconnecting", then "streaming"); the picture
        // stays until the new owner's init arrives.
        hooks.onRelay?.(JSON.parse(event.data));
        return;
      }
      const view = new DataView(event.data);
      const length = view.getUint32(0);
      const header = JSON.parse(new TextDecoder().decode(new Uint8Array(event.data, 4, length)));
      const data = new Uint8Array(event.data, 4 + length);
      if (header.type === "init") { restart(header, data); return; }
      if (header.generation !== generation) return; // a fragment of a connection we left
      offset = header.wall - header.media;
      queue.push(data);
      append();
      hooks.onFragment?.(header);
    },
  });
  return {
    close() { gaveUp = true; socket.close(); },
    // Play again from a new connection (the tile's watchdog: no frame shown for seconds while
    // the socket is open). The socket reconnects as after a network failure; the server starts
    // every connection with an init, which builds a new MediaSource (restart above), and until
    // then fragments are not appended to the stalled one.
    reopen() { generation = null; socket.reconnect(); },
    wallAt(t) { return offset === null ? null : t + offset; },
  };
}
