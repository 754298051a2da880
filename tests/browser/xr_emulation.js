// Test-only WebXR device emulation for headless Chromium (loaded by the browser tests only).
// It stands in for a headset: navigator.xr says immersive-vr/ar are supported, a session runs
// frames through requestAnimationFrame with a fixed head pose, and one tracked controller can
// be moved and can press "select". three.js then takes its XRWebGLLayer path, as on a device
// without the WebXR Layers API.
(() => {
  const listeners = () => ({ map: new Map() });
  class Target {
    constructor() { this._l = listeners(); }
    addEventListener(type, fn) { (this._l.map.get(type) || this._l.map.set(type, []).get(type)).push(fn); }
    removeEventListener(type, fn) { this._l.map.set(type, (this._l.map.get(type) || []).filter((f) => f !== fn)); }
    dispatchEvent(event) { for (const fn of this._l.map.get(event.type) || []) fn(event); return true; }
  }
  const translation = (x, y, z) => new Float32Array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, x, y, z, 1]);
  class RigidTransform {
    constructor(position = { x: 0, y: 0, z: 0 }) {
      this.position = { ...position, w: 1 };
      this.orientation = { x: 0, y: 0, z: 0, w: 1 };
      this.matrix = translation(position.x, position.y, position.z);
    }
    get inverse() { return new RigidTransform({ x: -this.position.x, y: -this.position.y, z: -this.position.z }); }
  }
  const projection = (() => {
    const f = 1 / Math.tan(Math.PI / 4), near = 0.01, far = 100;
    return new Float32Array([f, 0, 0, 0, 0, f, 0, 0, 0, 0, (far + near) / (near - far), -1, 0, 0, (2 * far * near) / (near - far), 0]);
  })();
  class Space extends Target { getOffsetReferenceSpace() { return this; } }
  class WebGLLayer {
    constructor(session, gl) {
      this.framebuffer = null;
      this.framebufferWidth = gl.drawingBufferWidth;
      this.framebufferHeight = gl.drawingBufferHeight;
      this.antialias = false;
      this.ignoreDepthValues = false;
      this.fixedFoveation = 0;
    }
    getViewport() { return { x: 0, y: 0, width: this.framebufferWidth, height: this.framebufferHeight }; }
  }
  const emulation = { sessions: [], controller: { x: 0.2, y: 1.2, z: -0.3 }, frames: 0 };
  class Frame {
    constructor(session) { this.session = session; }
    getViewerPose() {
      const transform = new RigidTransform({ x: 0, y: 1.6, z: 0 });
      return { transform, emulatedPosition: false, views: [{ eye: "none", projectionMatrix: projection, transform }] };
    }
    getPose(space) {
      if (space !== this.session._controllerSpace) return null;
      return { transform: new RigidTransform(emulation.controller), emulatedPosition: false };
    }
  }
  class Session extends Target {
    constructor(mode) {
      super();
      this.mode = mode;
      this.renderState = { baseLayer: null, depthNear: 0.1, depthFar: 1000, inlineVerticalFieldOfView: null };
      this.inputSources = [];
      this.enabledFeatures = ["local"];
      this.visibilityState = "visible";
      this.environmentBlendMode = mode === "immersive-ar" ? "alpha-blend" : "opaque";
      this._controllerSpace = new Space();
      this.ended = false;
    }
    updateRenderState(state) { Object.assign(this.renderState, state); }
    async requestReferenceSpace() { return new Space(); }
    requestAnimationFrame(callback) {
      return window.requestAnimationFrame((time) => {
        if (this.ended) return;
        emulation.frames += 1;
        callback(time, new Frame(this));
      });
    }
    cancelAnimationFrame(id) { window.cancelAnimationFrame(id); }
    async end() {
      if (this.ended) return;
      this.ended = true;
      this.dispatchEvent({ type: "end", session: this });
    }
    // Test controls: connect a controller, press or release "select".
    connectController() {
      const source = { handedness: "right", targetRayMode: "tracked-pointer", targetRaySpace: this._controllerSpace, gripSpace: undefined, profiles: ["generic-trigger"], gamepad: null, hand: null };
      this.inputSources = [source];
      this.dispatchEvent({ type: "inputsourceschange", session: this, added: [source], removed: [] });
    }
    press(type) {
      const source = this.inputSources[0];
      this.dispatchEvent({ type, inputSource: source, frame: new Frame(this) });
    }
  }
  const xr = new Target();
  xr.isSessionSupported = async (mode) => mode === "immersive-vr" || mode === "immersive-ar";
  xr.requestSession = async (mode) => {
    const session = new Session(mode);
    emulation.sessions.push(session);
    return session;
  };
  Object.defineProperty(navigator, "xr", { value: xr, configurable: true });
  window.XRWebGLLayer = WebGLLayer;
  window.XRRigidTransform = RigidTransform;
  delete window.XRWebGLBinding; // no Layers API on this "device"
  if (typeof window.XRWebGLBinding !== "undefined") window.XRWebGLBinding = undefined;
  if (window.WebGL2RenderingContext) WebGL2RenderingContext.prototype.makeXRCompatible = async () => undefined;
  if (window.WebGLRenderingContext) WebGLRenderingContext.prototype.makeXRCompatible = async () => undefined;
  window.__xrEmulation = emulation;
})();
