// Organ meshes from the job's GLB: vertices are patient RAS+ mm (see io.mesh_export).
import { Group, Mesh, type BufferGeometry } from "three";
import { GLTFLoader } from "three/examples/jsm/loaders/GLTFLoader.js";

export type OrganMesh = { name: string; positions: Float32Array; indices: Uint32Array };

export async function parseGlb(buffer: ArrayBuffer): Promise<{ scene: Group; organs: OrganMesh[] }> {
  const gltf = await new GLTFLoader().parseAsync(buffer, "");
  const scene = gltf.scene;
  scene.updateMatrixWorld(true);
  const organs: OrganMesh[] = [];
  scene.traverse((node) => {
    if (!(node instanceof Mesh)) return;
    const geometry = (node.geometry as BufferGeometry).clone().applyMatrix4(node.matrixWorld);
    const position = geometry.getAttribute("position");
    const positions = new Float32Array(position.array as ArrayLike<number>);
    const index = geometry.getIndex();
    const indices = index
      ? Uint32Array.from(index.array as ArrayLike<number>)
      : Uint32Array.from({ length: position.count }, (_, i) => i);
    organs.push({ name: node.name || node.parent?.name || "structure", positions, indices });
  });
  return { scene, organs };
}
