import { fileURLToPath } from "node:url";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// Built into dist/web, which the server serves from the same origin as the API.
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  plugins: [react()],
  build: {
    outDir: fileURLToPath(new URL("../dist/web", import.meta.url)),
    emptyOutDir: true,
    // The CSP allows no inline script or style: nothing may be inlined as a data: URL either.
    assetsInlineLimit: 0,
    reportCompressedSize: true,
  },
});
