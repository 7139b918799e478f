import { MutationCache, QueryCache, QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { RouterProvider } from "react-router";
import { ApiError } from "./api";
import { router } from "./router";
import { SESSION_KEY } from "./session";
import "./styles.css";

/** The session ended on the server (expired, or signed out elsewhere): the page stops acting signed in and asks for a sign-in. */
const onError = (err: unknown) => {
  if (err instanceof ApiError && err.code === "unauthenticated") client.setQueryData(SESSION_KEY, null);
};

const client: QueryClient = new QueryClient({
  queryCache: new QueryCache({ onError }),
  mutationCache: new MutationCache({ onError }),
  defaultOptions: {
    queries: {
      // A 4xx will not change by asking again; a network blip or a 5xx may.
      retry: (count, err) => count < 2 && !(err instanceof ApiError && err.status >= 400 && err.status < 500),
      refetchOnWindowFocus: false,
    },
    // What a form sent (passwords among it) is not kept once nothing shows its outcome.
    mutations: { gcTime: 0 },
  },
});

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <QueryClientProvider client={client}>
      <RouterProvider router={router} />
    </QueryClientProvider>
  </StrictMode>,
);
