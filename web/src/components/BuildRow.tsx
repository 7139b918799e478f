import { Link } from "react-router";
import type { Build } from "../types";
import { Status } from "./Status";
import { TableHead } from "./TableHead";
import { duration, Time } from "./Time";

/** What a build is of: its branch, tag or pull request. */
export const refOf = (b: Build) => (b.pullRequest !== null ? `PR #${b.pullRequest}` : b.tag !== null ? `tag ${b.tag}` : (b.branch ?? "–"));

/** One build in a table: number, status, what and who, when and how long. */
export function BuildRow({ build, project }: { build: Build; project?: string }) {
  return (
    <tr>
      <td>
        <Link to={`/builds/${build.id}`}>
          {project ? `${project} ` : ""}#{build.number}
        </Link>
      </td>
      <td>
        <Status status={build.status} />
      </td>
      <td>{refOf(build)}</td>
      <td className="mono">{build.commit?.slice(0, 8) ?? "–"}</td>
      <td className="message">{build.message.split("\n")[0]}</td>
      <td>{build.author.name || "–"}</td>
      <td>
        <Time at={build.createdAt} />
      </td>
      <td>{duration(build.startedAt, build.finishedAt)}</td>
    </tr>
  );
}

export function BuildTable({ builds, showProject }: { builds: Array<{ build: Build; project?: string }>; showProject?: boolean }) {
  return (
    <table className="builds">
      <TableHead columns={[showProject ? "Build" : "#", "Status", "Ref", "Commit", "Message", "Author", "Started", "Duration"]} />
      <tbody>
        {builds.map(({ build, project }) => (
          <BuildRow key={build.id} build={build} project={project} />
        ))}
      </tbody>
    </table>
  );
}
