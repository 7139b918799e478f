import { createBrowserRouter, type RouteObject } from "react-router";
import { PageError, RequireSignIn, Shell } from "./components/Layout";

/** Each page is its own chunk, loaded when first visited. */
const page = (load: () => Promise<{ default: React.ComponentType }>): Pick<RouteObject, "lazy"> => ({
  lazy: async () => ({ Component: (await load()).default }),
});

export const router = createBrowserRouter([
  {
    element: <Shell />,
    errorElement: <PageError />,
    children: [
      { path: "/sign-in", ...page(() => import("./pages/SignIn")) },
      { path: "/sign-up", ...page(() => import("./pages/SignUp")) },
      { path: "/verify-email", ...page(() => import("./pages/VerifyEmail")) },
      { path: "/forgot-password", ...page(() => import("./pages/ForgotPassword")) },
      { path: "/reset-password", ...page(() => import("./pages/ResetPassword")) },
      // Signed in or not: it sends a visitor to sign in itself, keeping the token out of the URL.
      { path: "/accept-invitation", ...page(() => import("./pages/AcceptInvitation")) },
      {
        element: <RequireSignIn />,
        children: [
          { path: "/", ...page(() => import("./pages/Dashboard")) },
          { path: "/projects/new", ...page(() => import("./pages/NewProject")) },
          { path: "/projects/:projectId", ...page(() => import("./pages/Project")) },
          { path: "/projects/:projectId/settings", ...page(() => import("./pages/ProjectSettings")) },
          { path: "/builds/:buildId", ...page(() => import("./pages/Build")) },
          { path: "/orgs", ...page(() => import("./pages/Orgs")) },
          { path: "/orgs/:orgId", ...page(() => import("./pages/Org")) },
          { path: "/account", ...page(() => import("./pages/Account")) },
          { path: "/workspaces", ...page(() => import("./pages/Workspaces")) },
          { path: "/workspaces/new", ...page(() => import("./pages/OpenWorkspace")) },
          { path: "/workspaces/:workspaceId", ...page(() => import("./pages/Workspace")) },
          { path: "/snapshots/:snapshotId", ...page(() => import("./pages/OpenSnapshot")) },
        ],
      },
      { path: "*", ...page(() => import("./pages/NotFound")) },
    ],
  },
]);
