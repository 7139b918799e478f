import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { testImageLayout } from "./helpers/test-image.js";
import { blobsOf, sh, useImageBuildLab } from "./helpers/image-build-lab.js";

// Real image builds (rootless buildah in a builder sandbox): what they make, and how they fail.
const { lab, build, buildFails, sandboxOf, cacheEntries } = useImageBuildLab();

describe("image builds", () => {
  it("builds a multi-stage Dockerfile with args, .dockerignore, ENV, WORKDIR and USER, and the image runs as a step's image", async () => {
    const { image, output } = await build(
      {
        Dockerfile: [
          "ARG GREETING=hello",
          "FROM debian:bookworm AS tools",
          "ARG GREETING",
          'RUN echo "$GREETING from the first stage" > /greeting',
          "",
          "FROM debian:bookworm",
          "ENV APP_HOME=/app",
          "WORKDIR $APP_HOME",
          "COPY --from=tools /greeting ./greeting",
          "COPY . ./src/",
          "RUN useradd -u 1234 app && touch owned && chown app owned",
          "USER app",
          "RUN id -u > /tmp/whoami-at-build",
          'CMD ["cat", "/app/greeting"]',
        ].join("\n"),
        ".dockerignore": "secret.txt\nnotes/**\n!notes/keep.md\n",
        "secret.txt": "must not be copied",
        "notes/drop.md": "dropped",
        "notes/keep.md": "kept",
        "app.txt": "application",
      },
      { args: { GREETING: "bonjour" } },
    );
    expect(output).toMatch(/STEP \d+\/\d+: RUN useradd/);
    expect(image.digest).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(image.env.APP_HOME).toBe("/app");
    const s = await sandboxOf(image);
    expect(await sh(s, "cat /app/greeting")).toBe("bonjour from the first stage\n");
    expect(await sh(s, "cat /app/src/app.txt /app/src/notes/keep.md")).toBe("applicationkept");
    expect(await sh(s, "ls /app/src")).not.toMatch(/secret\.txt/);
    expect(await sh(s, "ls /app/src/notes")).toBe("keep.md\n");
    expect(await sh(s, "cat /tmp/whoami-at-build")).toBe("1234\n");
    // Steps see every owner but root as nobody; the image itself keeps the owner.
    expect(statSync(path.join(image.rootfs, "app", "owned")).uid).toBe(1234);
  });

  it("P17: a secret build arg and secret mount reach the build but no layer, config or history of the image", async () => {
    const marker = `secret-${randomBytes(12).toString("hex")}`;
    const { image, output } = await build(
      {
        Dockerfile: [
          "FROM debian:bookworm",
          "ARG TOKEN",
          'RUN test "$TOKEN" = "' + marker.slice(0, 7) + '$(echo ' + marker.slice(7) + ')" && echo arg-seen',
          'RUN --mount=type=secret,id=TOKEN test "$(cat /run/secrets/TOKEN)" = "$TOKEN" && echo mount-seen > /mount-seen',
        ].join("\n"),
      },
      { secretArgs: { TOKEN: marker } },
    );
    expect(output).toContain("arg-seen");
    expect(output).not.toContain(marker);
    const blobs = blobsOf(image);
    expect(blobs.length).toBeGreaterThanOrEqual(3);
    for (const blob of blobs) expect(blob.includes(marker)).toBe(false);
    // Control: the search reads the layers, as the marker of the secret mount's step is found.
    expect(blobs.some((b) => b.includes("mount-seen"))).toBe(true);
    expect(await sh(await sandboxOf(image), "cat /mount-seen; cat /run/secrets/TOKEN 2>&1")).toMatch(/^mount-seen\n.*No such file/);
  });
});

describe("pinned base images", () => {
  it("a FROM pinned by digest builds from exactly that image; another digest is refused, naming both", async () => {
    const index = JSON.parse(readFileSync(path.join(testImageLayout(), "index.json"), "utf8")) as { manifests: Array<{ digest: string }> };
    const digest = index.manifests[0]!.digest;
    const { image } = await build({ Dockerfile: `FROM debian:bookworm@${digest}\nRUN echo pinned > /pinned\n` });
    expect(await sh(await sandboxOf(image), "cat /pinned")).toBe("pinned\n");
    const other = `sha256:${"0".repeat(64)}`;
    await expect(build({ Dockerfile: `FROM debian:bookworm@${other}\n` })).rejects.toThrow(new RegExp(`found digest ${digest}, not the one the config pins`));
  });
});

describe("image builds that fail", () => {
  it("a failing RUN fails at its Dockerfile line; nothing is left in the image store and the sandbox is gone", async () => {
    const before = cacheEntries();
    const message = await buildFails({ Dockerfile: "FROM debian:bookworm\nRUN true\n  RUN exit 3\nRUN true\n" });
    expect(message).toMatch(/^Dockerfile:3:3: .*exit status 3/);
    expect(cacheEntries()).toEqual(before);
    expect(readdirSync(lab.runtimeDir)).toEqual([]);
  });

  it("the line of a failing step is found in a multi-stage build", async () => {
    const message = await buildFails({ Dockerfile: "FROM debian:bookworm AS a\nRUN true\nFROM debian:bookworm\nCOPY --from=a /etc/hostname /x\nRUN false\n" });
    expect(message).toMatch(/^Dockerfile:5:1: .*exit status 1/);
  });

  it("an unsupported instruction, a COPY from outside the context and a missing Dockerfile fail before anything runs", async () => {
    expect(await buildFails({ Dockerfile: "FROM debian:bookworm\nONBUILD RUN true\n" })).toMatch(/^Dockerfile:2:1: error: .*ONBUILD/);
    expect(await buildFails({ Dockerfile: "FROM debian:bookworm\nCOPY ../etc/passwd /x\n" })).toMatch(/^Dockerfile:2:\d+: error: .*outside the build context/);
    expect(await buildFails({ "app/Dockerfile": "FROM debian:bookworm\n" }, { dockerfile: "Dockerfile" })).toMatch(/Dockerfile: the Dockerfile does not exist/);
  });

  it("a Dockerfile that is a link to /dev/zero (or any other non-file) is refused at once, not read forever", async () => {
    const message = await buildFails({}, {}, { checkout: async (sandbox) => void (await sandbox.exec({ argv: ["ln", "-s", "/dev/zero", "/workspace/Dockerfile"] })) });
    expect(message).toMatch(/^Dockerfile: the Dockerfile does not exist in this commit \(or is not a file\)/);
  });

  it("a link in the context that points outside it copies the link, never the host file", async () => {
    const { image } = await build({ Dockerfile: "FROM debian:bookworm\nCOPY . /ctx/\n" }, {}, {
      checkout: async (sandbox) => {
        await sandbox.exec({ argv: ["/bin/sh", "-c", "printf 'FROM debian:bookworm\\nCOPY . /ctx/\\n' > /workspace/Dockerfile && ln -s /etc/shadow /workspace/shadow && ln -s ../../../../etc/passwd /workspace/up"] });
      },
    });
    const s = await sandboxOf(image);
    expect(await sh(s, "readlink /ctx/shadow /ctx/up")).toBe("/etc/shadow\n../../../../etc/passwd\n");
  });

  it("a build that exhausts its memory fails at its line with what happened", async () => {
    const message = await buildFails({ Dockerfile: "FROM debian:bookworm\nRUN true\nRUN head -c 900M /dev/zero | tail -c 800M > /dev/null\n" }, {}, { limits: { memoryBytes: 512 * 1024 ** 2 } });
    expect(message).toMatch(/^Dockerfile:3:1: exit status 137 \(killed: most likely out of memory\)/);
  });

  it("a build that fills its filesystem fails with what to do, and leaves nothing behind", async () => {
    const before = cacheEntries();
    const message = await buildFails({ Dockerfile: "FROM debian:bookworm\nRUN head -c 400M /dev/zero > /big\n" }, {}, { limits: { tmpfsBytes: 600 * 1024 ** 2 } });
    expect(message).toMatch(/raise its tmpfs size|no space left/i);
    expect(cacheEntries()).toEqual(before);
    expect(readdirSync(lab.runtimeDir)).toEqual([]);
  });
});
